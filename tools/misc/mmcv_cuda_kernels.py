"""Which CUDA kernels an installed mmcv carries, for which GPUs: checkable on
a machine without a GPU (a build node), before the wheel is shipped.

    python tools/misc/mmcv_cuda_kernels.py [--ext PATH] [--json OUT]

Lists the GPU architectures of the machine code in mmcv's ``_ext``
extension and checks that it holds the kernels the table configs run on
the GPU: NMS (RetinaNet's test, the RPN of Cascade Mask R-CNN), RoIAlign
forward and backward (Cascade Mask R-CNN) and the sigmoid focal loss
forward and backward (RetinaNet's loss). Exit 1 if one is missing or the
extension has no CUDA code. Reads the extension with ``cuobjdump`` (CUDA's
binary tool: on PATH, in ``$CUDA_HOME/bin``, or ``pip install
nvidia-cuda-cuobjdump``).
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

#: kernel (a substring of its mangled name) -> what runs it
TABLE_KERNELS = {
    'nms_cuda': 'nms (RetinaNet test, RPN)',
    'roi_align_forward_cuda_kernel': 'RoIAlign forward (Cascade Mask R-CNN)',
    'roi_align_backward_cuda_kernel': 'RoIAlign backward',
    'sigmoid_focal_loss_forward_cuda_kernel': 'sigmoid focal loss forward '
                                              '(RetinaNet)',
    'sigmoid_focal_loss_backward_cuda_kernel': 'sigmoid focal loss backward',
}


def find_cuobjdump():
    candidates = [shutil.which('cuobjdump')]
    if os.environ.get('CUDA_HOME'):
        candidates.append(osp.join(os.environ['CUDA_HOME'], 'bin',
                                   'cuobjdump'))
    for site in sys.path:
        candidates += glob.glob(osp.join(site, 'nvidia', '*', 'bin',
                                         'cuobjdump'))
    for path in candidates:
        if path and osp.isfile(path) and os.access(path, os.X_OK):
            return path
    raise SystemExit('cuobjdump not found: put CUDA\'s bin/ on PATH, set '
                     'CUDA_HOME, or pip install nvidia-cuda-cuobjdump.')


def mmcv_extension():
    import importlib.util
    spec = importlib.util.find_spec('mmcv')
    if spec is None:
        raise SystemExit('mmcv is not installed.')
    found = glob.glob(osp.join(osp.dirname(spec.origin), '_ext*.so'))
    if not found:
        raise SystemExit('mmcv has no compiled _ext (mmcv-lite?).')
    return found[0]


def inspect(ext, cuobjdump):
    """{arch: [kernel names]} of the machine code (ELF) in ``ext``."""
    out = subprocess.run([cuobjdump, '--dump-elf-symbols', ext],
                         capture_output=True, text=True)
    if out.returncode != 0:
        if 'does not contain device code' in out.stderr + out.stdout:
            return {}
        raise SystemExit(f'{cuobjdump} failed on {ext}:\n{out.stderr}')
    kernels, arch = {}, None
    for line in out.stdout.splitlines():
        header = re.search(r'arch = (sm_\d+a?)', line)
        if header:
            arch = header.group(1)
            kernels.setdefault(arch, set())
        elif arch and line.startswith('FUNC') and ' ENTRY ' in line:
            kernels[arch].add(line.split()[-1])
    return {a: sorted(k) for a, k in kernels.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--ext', help="mmcv's _ext*.so (default: the "
                        "installed mmcv's)")
    parser.add_argument('--json', help='write the findings as JSON here')
    args = parser.parse_args(argv)
    ext = args.ext or mmcv_extension()
    by_arch = inspect(ext, find_cuobjdump())
    report = dict(extension=ext, size_mb=round(osp.getsize(ext) / 2**20, 1),
                  architectures=sorted(by_arch),
                  kernels_per_architecture={a: len(k)
                                            for a, k in by_arch.items()},
                  table_kernels={})
    missing = []
    print(f'{ext} ({report["size_mb"]} MB)')
    if not by_arch:
        print('  no CUDA machine code: a CPU-only build')
        missing.append('all')
    for arch, names in sorted(by_arch.items()):
        print(f'  {arch}: {len(names)} kernels')
    for kernel, what in TABLE_KERNELS.items():
        archs = sorted(a for a, names in by_arch.items()
                       if any(kernel in n for n in names))
        report['table_kernels'][kernel] = archs
        state = ', '.join(archs) if archs else 'MISSING'
        print(f'  {what:45s} {kernel}: {state}')
        if by_arch and len(archs) < len(by_arch):
            missing.append(kernel)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=1)
    return 1 if missing else 0


if __name__ == '__main__':
    sys.exit(main())
