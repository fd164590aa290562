"""The CUDA side of a machine, checked before hours are spent: building
mmcv's CUDA ops (``tools/setup_env.sh``) and starting a GPU run
(``tools/train.py`` / ``tools/test.py``).

This module imports nothing but the standard library and torch at module
level, so ``tools/setup_env.sh`` runs it by path before mmcv exists::

    python mmadapter/cli/cuda_env.py build-env   # shell exports, or an error

Each problem is reported as one message that names the cause and the fix:
a GPU that torch cannot use (driver too old for torch's CUDA), a torch
without CUDA, an nvcc whose major version is not torch's, missing CUDA
headers, and (at run time) an mmcv without CUDA ops or without kernels for
the GPU's architecture.
"""
import glob
import os
import os.path as osp
import re
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

import torch

# The oldest Linux driver each CUDA major release runs on (NVIDIA's CUDA
# toolkit release notes, "minor version compatibility"): a torch built for
# CUDA 13 does not see GPUs of an older driver at all.
MIN_DRIVER = {13: '580.65.06', 12: '525.60.13', 11: '450.80.02'}


class CudaEnvError(RuntimeError):
    """The machine cannot do the CUDA work asked of it; the message says
    why and what to do."""


def driver_version() -> Optional[str]:
    """The NVIDIA kernel driver's version, or None where there is none."""
    try:
        with open('/proc/driver/nvidia/version') as f:
            match = re.search(r'Kernel Module\s+(?:for \S+\s+)?([\d.]+)',
                              f.read())
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which('nvidia-smi')
    if smi:
        try:
            out = subprocess.run(
                [smi, '--query-gpu=driver_version', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.split()[0]
    return None


def gpus_present() -> bool:
    """Does this machine have NVIDIA GPUs (whether or not torch can use
    them)? A job that hides them on purpose (``CUDA_VISIBLE_DEVICES=''`` or
    ``-1``) has asked for the CPU."""
    visible = os.environ.get('CUDA_VISIBLE_DEVICES')
    if visible is not None and visible.strip() in ('', '-1'):
        return False
    return bool(glob.glob('/dev/nvidia[0-9]*')) or driver_version() is not None


def _version_tuple(version: str):
    return tuple(int(part) for part in re.findall(r'\d+', version))


def unusable_gpu_reason() -> Optional[str]:
    """Why torch cannot use the GPUs this machine has, or None (no GPUs,
    GPUs hidden on purpose, or torch uses them)."""
    if torch.cuda.is_available() or not gpus_present():
        return None
    if torch.version.cuda is None:
        return (f'this machine has NVIDIA GPUs, but torch '
                f'{torch.__version__} is a CPU-only build. Install a CUDA '
                "build of torch (e.g. 'pip install torch==2.14.1' on Linux "
                'x86_64 brings CUDA 13.0) or hide the GPUs on purpose with '
                'CUDA_VISIBLE_DEVICES= for a CPU run.')
    cuda_major = int(torch.version.cuda.split('.')[0])
    driver = driver_version()
    needed = MIN_DRIVER.get(cuda_major)
    if driver and needed and _version_tuple(driver) < _version_tuple(needed):
        return (f'this machine has NVIDIA GPUs with driver {driver}, but '
                f'torch {torch.__version__} is built for CUDA '
                f'{torch.version.cuda}, which needs driver >= {needed}. '
                'Update the NVIDIA driver, or '
                'install a torch built for an older CUDA that this driver '
                'supports; hide the GPUs with CUDA_VISIBLE_DEVICES= for a CPU '
                'run.')
    try:  # torch's own reason (no device nodes, a broken install, ...)
        torch.cuda.init()
        detail = ''
    except Exception as error:  # noqa: BLE001 - reported to the user
        detail = f' (torch says: {error})'
    return (f'this machine has NVIDIA GPUs (driver {driver or "unknown"}), '
            f'but torch {torch.__version__} (CUDA {torch.version.cuda}) '
            f'cannot use them{detail}. Check that the driver is loaded '
            '(nvidia-smi) and this process may open /dev/nvidia*; hide the '
            'GPUs with CUDA_VISIBLE_DEVICES= for a CPU run.')


# --------------------------------------------------------------------------
# Building CUDA extensions (mmcv's ops) with torch's cpp_extension


def cuda_home() -> str:
    """The CUDA toolkit to compile with: ``$CUDA_HOME`` (or ``$CUDA_PATH``),
    else the one the ``nvcc`` on PATH belongs to, else /usr/local/cuda.

    torch's own guess takes the folder above ``nvcc``'s, which is wrong
    where ``nvcc`` on PATH is a wrapper script (``/usr/local/bin/nvcc``
    running ``/usr/local/cuda-13.0/bin/nvcc``)."""
    candidates = [os.environ.get('CUDA_HOME'), os.environ.get('CUDA_PATH')]
    nvcc = shutil.which('nvcc')
    if nvcc:
        real = osp.realpath(nvcc)
        candidates.append(osp.dirname(osp.dirname(real)))
        try:  # a wrapper script: the nvcc it runs
            with open(real, errors='ignore') as f:
                head = f.read(4096)
            for path in re.findall(r'(/\S+/bin/nvcc)\b', head):
                candidates.append(osp.dirname(osp.dirname(path)))
        except OSError:
            pass
    candidates.append('/usr/local/cuda')
    for home in candidates:
        if home and osp.isfile(osp.join(home, 'bin', 'nvcc')) and \
                osp.isfile(osp.join(home, 'include', 'cuda_runtime.h')):
            return home
    raise CudaEnvError(
        'no CUDA toolkit found (nvcc and cuda_runtime.h) to build CUDA ops '
        f'for torch {torch.__version__} (CUDA {torch.version.cuda}). Install '
        f'the CUDA {torch.version.cuda} toolkit and set CUDA_HOME to it, or '
        'put its bin/ on PATH.')


def nvcc_version(home: str) -> str:
    out = subprocess.run([osp.join(home, 'bin', 'nvcc'), '--version'],
                         capture_output=True, text=True, check=True).stdout
    match = re.search(r'release (\d+\.\d+)', out)
    if not match:
        raise CudaEnvError(f'could not read the version of {home}/bin/nvcc:\n'
                           f'{out}')
    return match.group(1)


def check_nvcc_matches_torch(home: str) -> str:
    """nvcc's version; an error where its major version is not torch's CUDA
    major version (torch's headers and the runtime it links would not match
    the compiler, and the build stops deep inside torch)."""
    if torch.version.cuda is None:
        raise CudaEnvError(
            f'CUDA ops were asked for (FORCE_CUDA=1), but torch '
            f'{torch.__version__} is a CPU-only build. Install a CUDA build '
            "of torch first (e.g. 'pip install torch==2.14.1' on Linux "
            'x86_64).')
    nvcc = nvcc_version(home)
    if nvcc.split('.')[0] != torch.version.cuda.split('.')[0]:
        raise CudaEnvError(
            f'nvcc {nvcc} ({home}) cannot build extensions for torch '
            f'{torch.__version__}, which is built for CUDA '
            f'{torch.version.cuda}. '
            f'Install a CUDA {torch.version.cuda.split(".")[0]}.x toolkit and '
            'set CUDA_HOME to it (or put its bin/ first on PATH), or install '
            f'the torch build for CUDA {nvcc}.')
    return nvcc


def torch_arch_list() -> List[str]:
    """The GPU architectures the installed torch was compiled for, as
    ``TORCH_CUDA_ARCH_LIST`` entries ('7.5', '8.0', ...)."""
    flags = torch._C._cuda_getArchFlags() if hasattr(
        torch._C, '_cuda_getArchFlags') else ''
    arches = []
    for sm in re.findall(r'sm_(\d+)', flags or ''):
        arches.append(f'{sm[:-1]}.{sm[-1]}')
    return arches


def default_arch_list() -> str:
    """``TORCH_CUDA_ARCH_LIST`` to build with when the user sets none: the
    visible GPUs' architectures, else (a build node without a GPU) every
    architecture torch itself was built for, with PTX of the newest so that
    later GPUs can still run the kernels."""
    if torch.cuda.is_available():
        arches = sorted({'%d.%d' % torch.cuda.get_device_capability(i)
                         for i in range(torch.cuda.device_count())},
                        key=_version_tuple)
    else:
        arches = torch_arch_list()
    if not arches:
        raise CudaEnvError(
            'cannot tell which GPU architectures to build for: no GPU is '
            f'visible and torch {torch.__version__} lists none. Set '
            "TORCH_CUDA_ARCH_LIST, e.g. TORCH_CUDA_ARCH_LIST='8.0;9.0'.")
    return ';'.join(arches[:-1] + [arches[-1] + '+PTX'])


def cuda_library_include_dirs(home: str) -> List[str]:
    """Include folders for the CUDA library headers that torch's ATen/cuda
    includes (cuBLAS, cuSPARSE, cuSOLVER, ...) where the toolkit at ``home``
    lacks them: torch's own ``nvidia-*`` wheels ship them
    (``site-packages/nvidia/cu13/include`` for CUDA 13, one folder per
    library for CUDA 12)."""
    if osp.isfile(osp.join(home, 'include', 'cusparse.h')):
        return []
    dirs = []
    for site in sys.path:
        nvidia = osp.join(site, 'nvidia')
        if not osp.isdir(nvidia):
            continue
        dirs += sorted(glob.glob(osp.join(nvidia, 'cu*', 'include')))
        dirs += sorted(d for d in glob.glob(osp.join(nvidia, '*', 'include'))
                       if d not in dirs)
    if not any(osp.isfile(osp.join(d, 'cusparse.h')) for d in dirs):
        raise CudaEnvError(
            f'the CUDA toolkit at {home} has no cusparse.h, and no nvidia-* '
            'wheel beside torch provides it (torch\'s ATen/cuda headers '
            'include it). Install the full CUDA toolkit, or the wheels torch '
            "depends on ('pip install torch' with its dependencies).")
    return dirs


def build_env() -> Dict[str, str]:
    """The environment that builds mmcv's CUDA ops here, and the cache key
    of the wheel it makes. Raises CudaEnvError naming what is missing."""
    reason = unusable_gpu_reason()
    if reason:
        raise CudaEnvError(reason)
    home = cuda_home()
    nvcc = check_nvcc_matches_torch(home)
    arches = os.environ.get('TORCH_CUDA_ARCH_LIST') or default_arch_list()
    includes = cuda_library_include_dirs(home)
    cpath = ':'.join(includes + [p for p in [os.environ.get('CPATH')] if p])
    key = 'cuda{}-sm{}'.format(
        torch.version.cuda,
        '_'.join(a.replace('.', '').replace('+PTX', 'ptx').replace(' ', '')
                 for a in re.split(r'[;\s]+', arches.strip()) if a))
    return dict(CUDA_HOME=home, TORCH_CUDA_ARCH_LIST=arches, CPATH=cpath,
                NVCC_VERSION=nvcc, MMCV_OPS_KEY=key)


# --------------------------------------------------------------------------
# At the start of a run


def mmcv_cuda_ops_problem(device: int = 0) -> Optional[str]:
    """Why mmcv's CUDA ops cannot run on GPU ``device``, or None. Runs one
    tiny NMS there: that meets both a CPU-only build ("implementation for
    device cuda:0 not found") and a build without kernels for this GPU's
    architecture ("no kernel image is available")."""
    import mmcv
    from mmcv.ops import get_compiling_cuda_version, nms
    fix = ('Rebuild it with CUDA ops for this GPU: FORCE_CUDA=1 '
           'bash tools/setup_env.sh (it replaces a CPU-only mmcv and builds '
           'for the visible GPUs, or for TORCH_CUDA_ARCH_LIST).')
    if get_compiling_cuda_version() == 'not available':
        return (f'mmcv {mmcv.__version__} was built without CUDA ops, and '
                'this run uses CUDA (detection needs mmcv.ops on the GPU: '
                'NMS, RoIAlign, sigmoid focal loss). ' + fix)
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]],
                         device=f'cuda:{device}')
    try:
        nms(boxes, torch.tensor([0.9, 0.8], device=boxes.device), 0.5)
        torch.cuda.synchronize(device)
    except RuntimeError as error:
        capability = '%d.%d' % torch.cuda.get_device_capability(device)
        return (f"mmcv {mmcv.__version__}'s CUDA ops fail on "
                f'{torch.cuda.get_device_name(device)} (compute capability '
                f'{capability}): {str(error).splitlines()[0]}. ' + fix)
    return None


def check_gpu_run(cuda_wanted: bool) -> None:
    """Before a train or test run is built: stop with the cause where GPUs
    exist but torch cannot use them, or where mmcv's CUDA ops would fail at
    the first detection step. ``cuda_wanted``: the run would use CUDA (it
    is available and not hidden)."""
    reason = unusable_gpu_reason()
    if reason:
        raise CudaEnvError(reason)
    if cuda_wanted and torch.cuda.is_available():
        problem = mmcv_cuda_ops_problem(
            int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
        if problem:
            raise CudaEnvError(problem)


def main(argv: List[str]) -> int:
    """``wants-cuda``: exit 0 where CUDA ops are to be built (FORCE_CUDA=1,
    or torch can use a GPU), 1 where not, 3 (with the reason) where GPUs
    exist that torch cannot use. ``build-env``: print the build's
    environment as NAME=VALUE lines, or the reason it cannot be built."""
    if argv[1:] == ['wants-cuda']:
        reason = unusable_gpu_reason()
        if reason and os.environ.get('FORCE_CUDA') != '1':
            print(f'error: {reason}', file=sys.stderr)
            return 3
        wanted = os.environ.get('FORCE_CUDA') == '1' or \
            torch.cuda.is_available()
        return 0 if wanted else 1
    if argv[1:] != ['build-env']:
        print(f'usage: python {argv[0]} wants-cuda|build-env',
              file=sys.stderr)
        return 2
    try:
        env = build_env()
    except CudaEnvError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    for name, value in env.items():
        print(f'{name}={value}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
