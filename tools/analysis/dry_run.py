"""A real-size dry run of a training config: the REAL model (full Swin-B/L or
ViT-B, real neck and heads), the real data pipeline and the same Runner as
tools/train.py, for a few iterations on generated data in the dataset's
real format and at its real image sizes; then tools/test.py on the saved
checkpoint. Catches dtype, shape, memory and pipeline faults before an
8-GPU job does.

    python tools/analysis/dry_run.py configs/mona/retinanet_swin_l_voc.py
    python tools/analysis/dry_run.py CONFIG --iters 3 --num-val 4 --amp
    python tools/analysis/dry_run.py CONFIG --gpus 8 --resume-check

``--gpus N`` launches both tools as users do, through tools/dist_train.sh
and tools/dist_test.sh (NCCL on GPUs; gloo where the machine has none).
``--resume-check`` trains ``--iters`` (even) iterations with a checkpoint
half-way, then trains again from that checkpoint with ``--resume`` and
reports how far the resumed run's losses and final weights are from the
uninterrupted run's (0 where resuming is exact).

Prints seconds per iteration, peak memory (the process's peak RSS; on CUDA
also the peak memory allocated per GPU) and the losses, and writes them to
WORK_DIR/dry_run.json. The backbone starts from random weights:
``init_cfg``'s pretrained file is not loaded (nor needed). Data loading runs
in the main process (num_workers=0) so that time and memory are the
model's. The generated images (tools/misc/make_toy_data.py) are
VOC-like 500x375, COCO-like 640x480 (the real pipeline then resizes them,
e.g. to 1333x800) and ADE20K-like 683x512.

Precision: the config's (AMP configs and ``--amp``: fp16 autocast on CUDA,
bfloat16 on a CPU), except on a CPU without fast bfloat16 kernels (no AVX-512
or AMX, e.g. an AVX2 AMD EPYC), where bfloat16 matmuls are ~50x slower than
float32 and a real-size AMP dry run takes over 20 minutes: there it trains
in float32 and says so (``--precision config`` keeps the autocast,
``--precision fp32`` asks for float32 anywhere).
"""
import argparse
import importlib.util
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from glob import glob
from typing import Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)  # run from a clone: use this checkout's package

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402

from mmadapter.datasets.config_entries import LOADERS, config_datasets  # noqa: E402
from mmadapter.engine.amp import (  # noqa: E402
    cpu_has_bfloat16_kernels,
    float32_optim_wrapper,
    is_amp,
)

#: dataset class -> (generator, image size W x H of the real dataset)
DATASETS = {
    'VOCDataset': ('voc', (500, 375)),
    'CocoDataset': ('coco', (640, 480)),
    'ADE20KDataset': ('ade20k', (683, 512)),
}
IMAGE_SIZES = dict(DATASETS.values())
RANDOM_WEIGHTS_NOTE = (
    'dry run: the backbone starts from random weights; init_cfg\'s '
    'pretrained file ({}) is not loaded.')


def toy_data_module():
    path = osp.join(REPO, 'tools', 'misc', 'make_toy_data.py')
    spec = importlib.util.spec_from_file_location('make_toy_data', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dataset_kind(cfg: Config) -> str:
    types = {str(d.get('type', '')).split('.')[-1]
             for _, d in config_datasets(cfg, LOADERS)}
    kinds = {DATASETS[t][0] for t in types if t in DATASETS}
    if len(kinds) != 1:
        raise SystemExit(
            f'dry_run: the config reads {sorted(types)}; the dry run '
            f'generates data for one of {sorted(DATASETS)}.')
    return kinds.pop()


def config_classes(cfg: Config) -> Optional[list]:
    """The class names the config's datasets are restricted to, if any."""
    for _, dataset in config_datasets(cfg, LOADERS):
        classes = (dataset.get('metainfo') or {}).get('classes')
        if classes:
            return list(classes)
    return None


def generate_data(kind: str, out_dir: str, num_train: int,
                  num_val: int, classes: Optional[list] = None) -> str:
    """Real-format data at the real image size; returns the data root."""
    writer = getattr(toy_data_module(), f'make_{kind}')
    options = {}
    if kind == 'coco':
        # the config's categories (a smaller model's), else all 80, so the
        # real head's labels map
        from mmdet.datasets import CocoDataset
        options['category_names'] = classes or CocoDataset.METAINFO['classes']
    return writer(out_dir, num_train=num_train, num_val=num_val,
                  img_size=IMAGE_SIZES[kind], **options)['root']


def choose_precision(precision: str, amp_config: bool, cuda: bool,
                     bf16_kernels: bool):
    """(train under autocast?, a note for the user or None) for
    ``--precision`` and a config that asks for AMP (``amp_config``)."""
    if not amp_config:
        return False, None
    if precision == 'fp32':
        return False, ('dry run: float32 (--precision fp32), not the '
                       "config's mixed precision.")
    if precision == 'auto' and not cuda and not bf16_kernels:
        return False, (
            'dry run: this CPU has no fast bfloat16 kernels (oneDNN needs '
            'AVX-512 or AMX), so bfloat16 autocast would run its matmuls '
            "~50x slower: the config's mixed precision is replaced by "
            'float32 here (--precision config keeps the autocast).')
    return True, None


def dry_run_config(config: str, kind: str, iters: int,
                   optim_wrapper: Optional[dict] = None,
                   checkpoint_interval: Optional[int] = None) -> str:
    """The overrides of the dry run, as a config file inheriting
    ``config`` (kept in the work directory, so the run can be repeated);
    ``optim_wrapper`` replaces the config's (float32 for an AMP one)."""
    lines = [
        f'_base_ = [{osp.abspath(config)!r}]',
        '# dry run of the config above (tools/analysis/dry_run.py):',
        '# random backbone weights, a few iterations, no validation while',
        '# training (tools/test.py evaluates the checkpoint), data loading',
        '# in the main process',
        'model = dict(backbone=dict(init_cfg=None))',
        f'train_cfg = dict(_delete_=True, type="IterBasedTrainLoop", '
        f'max_iters={iters})',
        'val_cfg = None',
        'val_dataloader = None',
        'val_evaluator = None',
        'default_hooks = dict(',
        '    logger=dict(interval=1),',
        '    checkpoint=dict(type="CheckpointHook", by_epoch=False, '
        f'interval={checkpoint_interval or iters}, max_keep_ckpts=2))',
        'log_processor = dict(by_epoch=False, window_size=1)',
        'train_dataloader = dict(num_workers=0, persistent_workers=False)',
        'test_dataloader = dict(num_workers=0, persistent_workers=False)',
    ]
    if kind == 'coco':
        # a model 2 iterations from random weights scores every class
        # about 1/81, under the 0.05 threshold: keep its detections, so
        # that CocoMetric evaluates them instead of reporting no results
        lines.append('model.update(test_cfg=dict(rcnn=dict(score_thr=0.0)))')
    if optim_wrapper is not None:
        lines.append(
            f'optim_wrapper = {dict(_delete_=True, **optim_wrapper)!r}')
    return '\n'.join(lines) + '\n'


def run_measured(command, log_path, port=None):
    """Run ``command``, its output to ``log_path``; returns (exit code,
    wall seconds, CPU seconds, peak RSS in GiB of the process)."""
    start = time.time()
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO, env=tool_env(port),
                                preexec_fn=die_with_parent)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return (proc.returncode, time.time() - start,
            usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 2**20)


def die_with_parent():
    """In the child (Linux): be killed when this process dies, so that a
    dry run killed from outside (a test's timeout, a scheduler's limit)
    leaves no training running on without it."""
    if sys.platform.startswith('linux'):
        import ctypes
        import signal
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG,
                                                signal.SIGKILL)


def tool_env(port: Optional[int] = None):
    env = dict(os.environ)
    if port is not None:  # tools/dist_*.sh's rendezvous port
        env['PORT'] = str(port)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO] + [p for p in [env.get('PYTHONPATH')] if p])
    return env


def tail(path, lines=40):
    with open(path) as f:
        return ''.join(f.readlines()[-lines:])


def train_scalars(work_dir):
    """Per-iteration entries of the training log (vis_data/scalars.json)."""
    paths = sorted(glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        return []
    with open(paths[-1]) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    return [e for e in entries if 'loss' in e]


#: keys of mmengine's per-iteration log entries, not metrics
LOG_KEYS = {'data_time', 'time', 'step', 'iter', 'memory'}


def test_metrics(work_dir):
    """The metrics tools/test.py logged (the last entry of its JSON log
    with keys other than the per-iteration timings)."""
    paths = sorted(glob(osp.join(work_dir, '*', '*.json')))
    if not paths:
        return {}
    with open(paths[-1]) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    metrics = [e for e in entries if set(e) - LOG_KEYS]
    return {k: v for k, v in metrics[-1].items() if k not in LOG_KEYS} \
        if metrics else {}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Real-size dry run of a config: a few training '
        'iterations of the real model on generated data, then tools/test.py')
    parser.add_argument('config')
    parser.add_argument('--work-dir', help='default: '
                        'work_dirs/dry_run/<config name>')
    parser.add_argument('--iters', type=int, default=2,
                        help='training iterations (2)')
    parser.add_argument('--num-train', type=int, default=2,
                        help='generated training images per split (2)')
    parser.add_argument('--num-val', type=int, default=2,
                        help='generated test images (2)')
    parser.add_argument('--amp', action='store_true',
                        help="tools/train.py's --amp")
    parser.add_argument(
        '--precision', choices=['auto', 'config', 'fp32'], default='auto',
        help="auto (default): the config's, but float32 instead of AMP on a "
        'CPU without fast bfloat16 kernels; config: always the '
        "config's (and --amp); fp32: always float32")
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='more --cfg-options for both tools')
    parser.add_argument(
        '--gpus', type=int, default=0,
        help='launch through tools/dist_train.sh and tools/dist_test.sh '
        'with this many processes (default: one process, tools/train.py)')
    parser.add_argument('--port', type=int, default=29500,
                        help='rendezvous port of --gpus runs (29500)')
    parser.add_argument(
        '--resume-check', action='store_true',
        help='train again from the half-way checkpoint with --resume and '
        'compare with the uninterrupted run')
    return parser.parse_args(argv)


def tool_command(tool: str, gpus: int, args) -> list:
    """tools/<tool>.py ARGS, or through tools/dist_<tool>.sh with ``gpus``
    processes, as a user launches it."""
    if gpus:
        return ['bash', osp.join(REPO, 'tools', f'dist_{tool}.sh'), args[0],
                *args[1:2 if tool == 'test' else 1], str(gpus),
                *args[2 if tool == 'test' else 1:]]
    return [sys.executable, osp.join(REPO, 'tools', f'{tool}.py'), *args]


def checkpoint_weights(path: str) -> dict:
    """The floating-point tensors of a checkpoint's state dict (weights-only
    load)."""
    from mmadapter.safe_load import load_file
    state = load_file(path, map_location='cpu')
    state = state.get('state_dict', state)
    return {k: v.float() for k, v in state.items()
            if torch.is_tensor(v) and v.is_floating_point()}


def compare_resumed(first_dir: str, resumed_dir: str, iters: int) -> dict:
    """How far a run resumed half-way is from the uninterrupted one: the
    largest absolute difference of the losses logged after the resume and
    of the final checkpoints' weights."""
    first = {e['step']: e for e in train_scalars(first_dir)}
    resumed = {e['step']: e for e in train_scalars(resumed_dir)}
    steps = sorted(set(first) & set(resumed))
    loss_diff = max((abs(first[s][k] - resumed[s][k]) for s in steps
                     for k in first[s] if k.startswith('loss')
                     and k in resumed[s]), default=None)
    a = checkpoint_weights(osp.join(first_dir, f'iter_{iters}.pth'))
    b = checkpoint_weights(osp.join(resumed_dir, f'iter_{iters}.pth'))
    if set(a) != set(b):
        raise SystemExit('dry_run: the resumed run saved other weights '
                         f'({sorted(set(a) ^ set(b))[:5]} ...).')
    weight_diff = max(((a[k] - b[k]).abs().max().item() for k in a),
                      default=0.0)
    return dict(steps_compared=steps, max_loss_diff=loss_diff,
                max_weight_diff=weight_diff,
                exact=loss_diff == 0 and weight_diff == 0)


def main(argv=None):
    args = parse_args(argv)
    if args.iters < 1:
        raise SystemExit('dry_run: --iters must be at least 1.')
    if args.resume_check and (args.iters < 2 or args.iters % 2):
        raise SystemExit('dry_run: --resume-check needs an even --iters of '
                         'at least 2 (it resumes from the half-way '
                         'checkpoint).')
    cfg = Config.fromfile(args.config)
    kind = dataset_kind(cfg)
    name = osp.splitext(osp.basename(args.config))[0]
    parent = osp.basename(osp.dirname(osp.abspath(args.config)))
    work_dir = osp.abspath(args.work_dir or osp.join(
        'work_dirs', 'dry_run', f'{parent}_{name}'))
    os.makedirs(work_dir, exist_ok=True)
    pretrained = ((cfg.model.get('backbone') or {}).get('init_cfg') or
                  {}).get('checkpoint')
    if pretrained:
        print(RANDOM_WEIGHTS_NOTE.format(pretrained), flush=True)

    amp, precision_note = choose_precision(
        args.precision, args.amp or is_amp(cfg.optim_wrapper),
        torch.cuda.is_available(), cpu_has_bfloat16_kernels())
    if precision_note:
        print(precision_note, flush=True)
    optim_wrapper = None
    if not amp and is_amp(cfg.optim_wrapper):
        optim_wrapper = float32_optim_wrapper(cfg.optim_wrapper.to_dict())

    data_root = generate_data(kind, osp.join(work_dir, 'data'),
                              args.num_train, args.num_val,
                              config_classes(cfg))
    derived = osp.join(work_dir, f'dry_run_{name}.py')
    with open(derived, 'w') as f:
        f.write(dry_run_config(
            args.config, kind, args.iters, optim_wrapper,
            args.iters // 2 if args.resume_check else None))
    options = ['--cfg-options', f'data_root={data_root}', *args.cfg_options]
    train_dir = osp.join(work_dir, 'train')
    train_args = [derived, '--work-dir', train_dir,
                  *(['--amp'] * (args.amp and amp)), *options]
    train_cmd = tool_command('train', args.gpus, train_args)
    print(f'training {args.iters} iterations: {" ".join(train_cmd)}',
          flush=True)
    code, train_s, train_cpu_s, train_rss = run_measured(
        train_cmd, osp.join(work_dir, 'train.log'), args.port)
    if code != 0:
        raise SystemExit(f'dry_run: training failed (exit {code}); end of '
                         f'{work_dir}/train.log:\n'
                         f'{tail(osp.join(work_dir, "train.log"))}')
    scalars = train_scalars(train_dir)
    with open(osp.join(train_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()

    test_dir = osp.join(work_dir, 'test')
    test_cmd = tool_command('test', args.gpus, [
        derived, checkpoint, '--work-dir', test_dir, *options])
    print(f'testing the checkpoint: {" ".join(test_cmd)}', flush=True)
    code, test_s, test_cpu_s, test_rss = run_measured(
        test_cmd, osp.join(work_dir, 'test.log'), args.port)
    if code != 0:
        raise SystemExit(f'dry_run: testing failed (exit {code}); end of '
                         f'{work_dir}/test.log:\n'
                         f'{tail(osp.join(work_dir, "test.log"))}')

    resume = None
    if args.resume_check:
        resumed_dir = osp.join(work_dir, 'resumed')
        half = osp.join(train_dir, f'iter_{args.iters // 2}.pth')
        resume_cmd = tool_command('train', args.gpus, [
            *train_args[:2], resumed_dir, *train_args[3:], '--resume', half])
        print(f'resuming from {half}: {" ".join(resume_cmd)}', flush=True)
        code, *_ = run_measured(resume_cmd,
                                osp.join(work_dir, 'resume.log'), args.port)
        if code != 0:
            raise SystemExit(f'dry_run: the resumed run failed (exit {code});'
                             f' end of {work_dir}/resume.log:\n'
                             f'{tail(osp.join(work_dir, "resume.log"))}')
        resume = compare_resumed(train_dir, resumed_dir, args.iters)

    losses = [{k: v for k, v in e.items() if 'loss' in k}
              for e in scalars]
    times = [e['time'] for e in scalars if 'time' in e]
    cuda_mb = [e['memory'] for e in scalars if 'memory' in e]
    result = dict(
        config=osp.relpath(osp.abspath(args.config), REPO),
        dataset=kind, image_size='x'.join(map(str, IMAGE_SIZES[kind])),
        iters=len(scalars),
        seconds_per_iter=times[-1] if times else None,
        iter_seconds=times,
        train_peak_rss_gib=round(train_rss, 2),
        test_peak_rss_gib=round(test_rss, 2),
        cuda_peak_mib=max(cuda_mb) if cuda_mb else None,
        losses=losses,
        finite_losses=all(math.isfinite(v) for e in losses
                          for v in e.values()),
        metrics=test_metrics(test_dir),
        train_wall_s=round(train_s, 1), test_wall_s=round(test_s, 1),
        train_cpu_s=round(train_cpu_s, 1), test_cpu_s=round(test_cpu_s, 1),
        amp=amp, precision_note=precision_note, gpus=args.gpus,
        device=torch.cuda.get_device_name(0)
        if torch.cuda.is_available() else 'cpu',
        resume=resume, random_backbone_weights=True, work_dir=work_dir)
    with open(osp.join(work_dir, 'dry_run.json'), 'w') as f:
        json.dump(result, f, indent=1)

    print(f'\n{result["config"]}: {kind} data at {result["image_size"]}, '
          f'random backbone weights')
    for i, (step, loss) in enumerate(zip(times, losses), start=1):
        shown = ', '.join(f'{k} {v:.4f}' for k, v in loss.items())
        print(f'  iteration {i}: {step:.2f} s  {shown}')
    print(f'  seconds per iteration (last): {result["seconds_per_iter"]}')
    print(f'  peak memory: training {train_rss:.2f} GiB RSS, testing '
          f'{test_rss:.2f} GiB RSS'
          + (f', CUDA {result["cuda_peak_mib"]} MiB per GPU'
             if cuda_mb else ''))
    print(f'  test metrics: {json.dumps(result["metrics"])}')
    if resume:
        print(f'  resumed from iteration {args.iters // 2}: largest '
              f'difference to the uninterrupted run: losses '
              f'{resume["max_loss_diff"]}, weights '
              f'{resume["max_weight_diff"]}'
              + (' (exact)' if resume['exact'] else ''))
    print(f'  wall (CPU) seconds: training {train_s:.0f} ({train_cpu_s:.0f}),'
          f' testing {test_s:.0f} ({test_cpu_s:.0f}); {work_dir}/dry_run.json')
    if not result['finite_losses']:
        raise SystemExit('dry_run: a loss is not finite.')
    return result


if __name__ == '__main__':
    main()
