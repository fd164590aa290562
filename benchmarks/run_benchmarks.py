"""Speed and memory of the adapters, as ratios measured in one run.

    python benchmarks/run_benchmarks.py            # Swin-B, 512x512, batch 1
    python benchmarks/run_benchmarks.py --quick    # tiny Swin (CI keeps it working)
    python benchmarks/run_benchmarks.py --device cuda
    python benchmarks/run_benchmarks.py --device cuda --setting coco  # real sizes

Measures (each ratio from timings taken in the same process, so it does not
depend on the machine's absolute speed):
1. Mona module forward+backward, fused vs the reference structure;
2. one training step (forward, backward, AdamW step) of the backbone with each
   method vs Full fine-tuning: time ratio and peak memory ratio;
3. inference latency of each adapted backbone vs the stock backbone (LoRA
   merged and unmerged).
Beside each ratio to Full, the training table gives the method's margin
above the floor: the ratio minus that of "Fixed (grad through blocks)", a
frozen backbone that still back-propagates through every block, which is what
any adapter placed in the blocks must pay. The margins are what the adapters'
own modules cost, and move less from machine to machine than the ratios.

``--setting coco|voc|ade20k`` measures only the training step, at what the
paper's runs train with (input size after mmdet's padding to multiples of 32,
batch per GPU, mixed precision; see ``SETTINGS``).
Peak memory counts all that training holds (weights, gradients, optimizer
state, activations): ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
growth of the peak resident memory of a fresh subprocess per method from
before the model is built, with every allocation of 128 KiB or more its own
mapping so that it counts live tensors as CUDA's does (``--heap-rss``:
glibc's defaults, heap holes included).

Writes ``RESULTS_<run>.md`` (a table, naming the machine, torch version and
input sizes), ``results_<run>.json`` and ``tradeoff_<run>.png`` into
``--out-dir``, and ``RESULTS.md`` there: one row per run found in it.
"""
import argparse
import json
import multiprocessing as mp
import os
import os.path as osp
import platform
import resource
import statistics
import sys
import time

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))
sys.path.insert(0, HERE)

import mmadapter  # noqa: E402,F401
from bench_report import FLOOR, plot, write_index, write_results  # noqa: E402,E501
from mmadapter.adapters import MonaOp  # noqa: E402
from mmadapter.backbones import AdapterSwinTransformer  # noqa: E402

def _arch(name):
    """A Swin architecture of the paper's configs (configs/_base_/models),
    without its pretrained weights, drop path off (deterministic steps)."""
    from mmengine.config import Config
    cfg = Config.fromfile(
        osp.join(osp.dirname(HERE), 'configs', '_base_', 'models',
                 f'{name}_in22k.py'))[name]
    return {k: v for k, v in cfg.items() if k not in ('type', 'init_cfg')
            } | dict(drop_path_rate=0.0)


SWIN_TINY = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                 drop_path_rate=0.0)
ARCHS = {'Swin-B': lambda: _arch('swin_b'), 'Swin-L': lambda: _arch('swin_l'),
         'Swin tiny test arch': lambda: SWIN_TINY}
METHODS = {
    'Full': dict(adapter=None, tuning='full'),
    FLOOR: None,  # built specially, see build_backbone
    'Mona': dict(adapter=dict(type='Mona', bottleneck=64)),
    'Mona (recompute=True)': dict(
        adapter=dict(type='Mona', bottleneck=64, recompute=True)),
    'LoRA': dict(adapter=dict(type='LoRA', rank=64, alpha=1)),
    'AdaptFormer': dict(adapter=dict(type='AdaptFormer', bottleneck=64)),
    'Houlsby': dict(adapter=dict(type='Houlsby', bottleneck=64)),
    'LoRand': dict(adapter=dict(type='LoRand')),
}
TARGETS = {  # (time ratio, memory ratio) upper bounds vs Full, issue #6
    'Mona': (0.80, 0.75),
    'LoRA': (0.75, 0.70),
    'AdaptFormer': (0.75, 0.70),
    'Houlsby': (0.75, 0.70),
}
#: Upper bounds of the margin above the floor, in time and in memory, for
#: the default run (Swin-B 512x512, batch 1; issue #16).
MARGIN_TARGETS = {'Mona': 0.05, 'LoRA': 0.05, 'Houlsby': 0.06, 'LoRand': 0.06}
#: What the paper's runs train with, one GPU's share. ``hw`` is the input
#: tensor mmdet feeds the backbone: the resized image padded to multiples of
#: 32 (pad_size_divisor=32), e.g. 1333x800 -> 1344x800. ``quick_hw`` keeps
#: the shape's aspect for the tiny check. On CPU, fp16 autocast (emulated,
#: ~10x slower than bf16 there) runs as bf16, without loss scaling.
SETTINGS = {
    'coco': dict(arch='Swin-B', hw=(800, 1344), batch=1, amp='fp16',
                 quick_hw=(32, 64), what='COCO (Cascade Mask R-CNN), '
                 '1333x800, fp16 AMP',
                 targets={'Mona': (1.0, 0.75)}),
    'voc': dict(arch='Swin-L', hw=(608, 1024), batch=1, amp='fp16',
                quick_hw=(32, 64), what='VOC (RetinaNet), 1000x600, '
                'fp16 AMP', targets={}),
    'ade20k': dict(arch='Swin-L', hw=(512, 512), batch=2, amp=None,
                   quick_hw=(32, 32), what='ADE20K (UperNet), 512x512 '
                   'crops, fp32', targets={}),
}
#: The methods a setting measures by default.
SETTING_METHODS = ('Full', FLOOR, 'Mona', 'LoRA', 'AdaptFormer', 'Houlsby')
AMP_DTYPES = {None: None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def flush_denormals(device, keep: bool) -> bool:
    """On CPU, flush subnormal floats to zero unless ``keep``; whether they
    are flushed.

    An x86 core takes a microcode assist, tens of times an operation's
    cost, for every subnormal operand (below 1.2e-38 in float32). Training
    steps produce them where nothing is wrong: Swin's shifted-window mask
    (-100 before the softmax: exp(-100) is subnormal), and in GELU outputs
    of inputs below about -13, which a randomly initialised stream gives
    (Mona's filter passes the raw stream, x * gammax, to its projection).
    Which operators hit them depends on the random values, not on the
    methods' costs, and a GPU runs them at full speed; so the CPU
    measurements flush them (``torch.set_flush_denormal``), as
    ``--keep-denormals`` does not.
    """
    if device.type != 'cpu' or keep:
        return False
    return torch.set_flush_denormal(True)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def round_robin_samples(calls, device, repeats, warmup_rounds=1):
    """Seconds of each of ``calls`` (name -> function) in each of
    ``repeats`` timed rounds (lists in round order).

    One round calls every function once; a change in the machine's speed
    during the run (other tenants, clock changes) then hits all of them
    alike instead of skewing a ratio, and each round's own ratios compare
    calls made seconds apart.
    """
    times = {name: [] for name in calls}
    for round_ in range(warmup_rounds + repeats):
        for name, fn in calls.items():
            sync(device)
            start = time.perf_counter()
            fn()
            sync(device)
            if round_ >= warmup_rounds:
                times[name].append(time.perf_counter() - start)
    return times


def round_robin_times(calls, device, repeats, warmup_rounds=1):
    """Median seconds of each of ``calls``, timed in turn
    (:func:`round_robin_samples`)."""
    samples = round_robin_samples(calls, device, repeats, warmup_rounds)
    return {name: statistics.median(t) for name, t in samples.items()}


def build_backbone(arch, method):
    if method == FLOOR:
        # The reference point of the issue: a frozen backbone whose input
        # needs a gradient, so backward still flows through every block.
        model = AdapterSwinTransformer(**arch, tuning='fixed')
        model.needs_input_grad = True
        return model
    model = AdapterSwinTransformer(**arch, **METHODS[method])
    model.init_weights()
    model.needs_input_grad = False
    return model


def train_step_fn(model, x, optimizer, amp=None):
    """One training step: forward (under autocast with ``amp``), backward
    (fp16: of the loss scaled by a GradScaler, as mmengine's
    AmpOptimWrapper does), optimizer step. The returned function counts the
    optimizer steps the scaler skipped (fp16 overflow) in ``.skipped``."""
    dtype = AMP_DTYPES[amp]
    device_type = x.device.type
    scaler = torch.amp.GradScaler(device_type,
                                  enabled=dtype == torch.float16)

    def step():
        inp = x.requires_grad_(model.needs_input_grad)
        with torch.autocast(device_type, dtype=dtype or torch.float32,
                            enabled=dtype is not None):
            outs = model(inp)
        loss = sum(o.float().square().mean() for o in outs)
        scaler.scale(loss).backward()
        if optimizer is not None:
            scale = scaler.get_scale() if scaler.is_enabled() else None
            scaler.step(optimizer)
            scaler.update()
            if scale is not None and scaler.get_scale() < scale:
                step.skipped += 1
            optimizer.zero_grad(set_to_none=True)
        inp.grad = None

    step.skipped = 0
    return step


def make_optimizer(model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05) \
        if params else None


def current_rss_kb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def make_input(bench, device):
    return torch.randn(bench['batch'], 3, *bench['hw'], device=device)


def measure_peak_memory(bench, method, device_name, keep_denormals=False,
                        queue=None):
    """Peak memory (MiB) of training steps, and the trainable count.

    Counts everything training holds: weights, gradients, optimizer state
    and activations (CUDA: peak allocated; CPU: growth of the peak resident
    set over the process's state before the model was built, so each method
    runs in a fresh process).
    """
    torch.manual_seed(0)
    device = torch.device(device_name)
    flush_denormals(device, keep_denormals)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base_kb = current_rss_kb()
    model = build_backbone(ARCHS[bench['arch']](), method).to(device).train()
    step = train_step_fn(model, make_input(bench, device),
                         make_optimizer(model), bench['amp'])
    for _ in range(2):  # the second step holds the optimizer state too
        step()
    sync(device)
    if device.type == 'cuda':
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss -
                base_kb) / 1024
    result = dict(peak_mib=peak,
                  trainable=sum(p.numel() for p in model.parameters()
                                if p.requires_grad))
    if queue is not None:
        queue.put(result)
    return result


def build_train_steps(bench, methods, device) -> dict:
    """Per method, a training-step function of its freshly built backbone
    (same seed for every method)."""
    steps = {}
    for method in methods:
        torch.manual_seed(0)
        model = build_backbone(ARCHS[bench['arch']](),
                               method).to(device).train()
        steps[method] = train_step_fn(model, make_input(bench, device),
                                      make_optimizer(model), bench['amp'])
    return steps


def measure_step_times(bench, methods, device_name, repeats):
    """Each method's training-step times (s) in each round, all models in
    this process taking their steps in turn, and the optimizer steps the
    fp16 loss scaler skipped. Two warm-up rounds: the first step allocates
    the optimizer state and the allocator settles on the second.
    """
    device = torch.device(device_name)
    steps = build_train_steps(bench, methods, device)
    samples = round_robin_samples(steps, device, repeats, warmup_rounds=2)
    return samples, {m: s.skipped for m, s in steps.items()}


#: What the CPU memory runs' processes start with unless ``--heap-rss``:
#: every allocation of 128 KiB or more its own mapping, returned to the
#: system when freed, so that peak RSS counts the tensors alive at the peak
#: (as torch.cuda.max_memory_allocated does) and not the holes glibc's heap
#: keeps between them, which move a margin by +-0.03 from run to run.
LIVE_TENSORS_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072'}


def in_subprocess(fn, *args, env=None):
    """Run ``fn`` in a fresh process (CPU peak memory is per process), with
    ``env`` added to its environment."""
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=fn, args=(*args, queue))
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = queue.get()
    proc.join()
    return result


def bench_mona_op(size, device, repeats):
    op = MonaOp(64).to(device)
    # channels-last, as Mona lays out its tokens
    x = torch.randn(1, size, size, 64, device=device).permute(0, 3, 1, 2)
    x.requires_grad_(True)

    def step(fused):
        op.fused = fused
        op(x).square().mean().backward()

    times = round_robin_times({'reference': lambda: step(False),
                               'fused': lambda: step(True)}, device, repeats)
    return dict(grid=size, **times,
                speedup=times['reference'] / times['fused'])


def bench_inference(bench, device, repeats):
    arch = ARCHS[bench['arch']]()
    x = make_input(bench, device)
    models = {'stock': AdapterSwinTransformer(**arch)}
    for method in ('Mona', 'LoRA', 'AdaptFormer', 'Houlsby', 'LoRand'):
        models[method] = AdapterSwinTransformer(**arch, **METHODS[method])
    merged = AdapterSwinTransformer(**arch, **METHODS['LoRA'])
    merged.merge_lora()
    models['LoRA (merged)'] = merged
    for model in models.values():
        model.to(device).eval()
    with torch.no_grad():
        results = round_robin_times(
            {name: (lambda model=model: model(x))
             for name, model in models.items()}, device, repeats)
    return {name: dict(seconds=t, ratio=t / results['stock'])
            for name, t in results.items()}


def machine_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{cpu}, {os.cpu_count()} cores'


def count_step_flops(bench, methods, device_name) -> dict:
    """Floating-point operations of one training step's matmuls and convs
    (forward and backward; torch.utils.flop_counter) per method: what any
    implementation of the same computation must do."""
    from torch.utils.flop_counter import FlopCounterMode
    device = torch.device(device_name)
    flops = {}
    for method in methods:
        step = build_train_steps(bench, [method], device)[method]
        with FlopCounterMode(display=False) as counter:
            step()
        flops[method] = counter.get_total_flops()
    return flops


def quartiles(values):
    """(first quartile, median, third quartile) of ``values``."""
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method='inclusive')
    return q1, q2, q3


def add_ratios(train, step_seconds, flops=None):
    """Ratios to Full and margins above the floor (when it was measured),
    from each method's step times per round (``step_seconds``: method ->
    list, one entry a round).

    Time ratios and margins are medians over the rounds of each round's own
    ratios: a round's steps of Full, the floor and the method ran seconds
    apart, so a change in the machine's speed between rounds cancels out of
    them. The time margin's interquartile range over the rounds says how
    far one round's estimate moves on this machine.
    """
    full, floor = train['Full'], train.get(FLOOR)
    rounds = range(len(step_seconds['Full']))
    for method, r in train.items():
        times = step_seconds[method]
        r['step_seconds'] = list(times)
        r['seconds'] = statistics.median(times)
        r['time_ratio'] = statistics.median(
            times[i] / step_seconds['Full'][i] for i in rounds)
        r['memory_ratio'] = r['peak_mib'] / full['peak_mib']
        if flops:
            r['flops'] = flops[method]
            r['flop_ratio'] = flops[method] / flops['Full']
    if floor is None:
        return train
    floor_times = step_seconds[FLOOR]
    for method, r in train.items():
        q1, median, q3 = quartiles([
            (step_seconds[method][i] - floor_times[i]) /
            step_seconds['Full'][i] for i in rounds])
        r['time_margin'], r['time_margin_iqr'] = median, [q1, q3]
        r['memory_margin'] = r['memory_ratio'] - floor['memory_ratio']
        if flops:
            r['flop_margin'] = r['flop_ratio'] - floor['flop_ratio']
    return train


def memory_kind(device, heap_rss=False):
    if device.type == 'cuda':
        return 'torch.cuda.max_memory_allocated'
    kind = 'peak RSS growth of a fresh process from before the model is built'
    if heap_rss:
        return kind + ' (glibc\'s default thresholds: heap holes included)'
    return kind + (', every allocation of 128 KiB or more its own mapping '
                   '(MALLOC_MMAP_THRESHOLD_=131072): the tensors alive at the '
                   'peak, as torch.cuda.max_memory_allocated counts them')


def load_average():
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='tiny Swin, small input, one repeat')
    parser.add_argument('--device', default='cuda'
                        if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--setting', choices=sorted(SETTINGS),
                        help='train at a paper setting\'s input size, batch '
                        'and precision (training steps only)')
    parser.add_argument('--size', type=int, default=None,
                        help='square input size without --setting')
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--out-dir', default=HERE)
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        default=None,
                        help='training-step methods to measure (Full is '
                        'always measured; default all, or with --setting '
                        f'{", ".join(SETTING_METHODS)})')
    parser.add_argument('--skip-inference', action='store_true')
    parser.add_argument('--keep-denormals', action='store_true',
                        help='on CPU, do not flush subnormal floats to zero '
                        '(see flush_denormals)')
    parser.add_argument('--heap-rss', action='store_true',
                        help='on CPU, measure peak RSS with glibc\'s default '
                        'allocation thresholds (counts heap holes; see '
                        'LIVE_TENSORS_ENV)')
    parser.add_argument('--skip-flops', action='store_true',
                        help='do not count each step\'s matmul/conv FLOPs')
    parser.add_argument('--skip-mona-op', action='store_true')
    parser.add_argument('--memory-from', default=None, metavar='JSON',
                        help='take the peak memory of each method from an '
                        'earlier run\'s results json (same machine and code: '
                        'memory does not depend on the load) and time only')
    parser.add_argument('--note', default=None,
                        help='said beside the run in RESULTS.md')
    args = parser.parse_args()
    device = torch.device(args.device)
    denormals_flushed = flush_denormals(device, args.keep_denormals)
    if args.setting:
        setting = SETTINGS[args.setting]
        bench = dict(arch=setting['arch'], hw=setting['hw'],
                     batch=setting['batch'], amp=setting['amp'])
        if device.type == 'cpu' and bench['amp'] == 'fp16':
            bench['amp'] = 'bf16'
        if args.quick:
            bench.update(arch='Swin tiny test arch', hw=setting['quick_hw'])
        tag = f'{device.type}_{args.setting}'
        targets, margin_targets = setting['targets'], {}
        default_methods = SETTING_METHODS
    else:
        size = args.size or (64 if args.quick else 512)
        bench = dict(arch='Swin tiny test arch' if args.quick else 'Swin-B',
                     hw=(size, size), batch=1, amp=None)
        tag = f'{device.type}_{size}'
        targets, margin_targets = TARGETS, MARGIN_TARGETS
        default_methods = tuple(METHODS)
    tag = ('quick_' if args.quick else '') + tag
    repeats = args.repeats or (1 if args.quick else 11)
    results = dict(tag=tag, machine=machine_name(device),
                   torch=torch.__version__, device=str(device),
                   threads=torch.get_num_threads(),
                   flush_denormal=denormals_flushed,
                   setting=SETTINGS[args.setting]['what'] if args.setting
                   else None, size=bench['hw'][0], **bench,
                   targets=targets, margin_targets=margin_targets,
                   load=dict(start=load_average()),
                   memory_kind='weights + gradients + optimizer state + '
                   'activations; ' + memory_kind(device, args.heap_rss))
    if args.note:
        results['note'] = args.note
    # tens of milliseconds a call: enough repeats for a stable median
    results['timed_calls'] = dict(
        mona_op=1 if args.quick else max(10 * repeats, 20), train=repeats,
        inference=repeats + 2)
    results['mona_op'] = None if args.setting or args.skip_mona_op \
        else bench_mona_op(
        16 if args.quick else bench['hw'][0] // 4, device,
        results['timed_calls']['mona_op'])
    if results['mona_op']:
        print('Mona op:', results['mona_op'], flush=True)
    methods = ['Full'] + [m for m in (args.methods or default_methods)
                          if m != 'Full']
    train = {}
    if args.memory_from:
        with open(args.memory_from) as f:
            earlier = json.load(f)
        results['memory_from'] = osp.basename(args.memory_from)
        results['memory_kind'] += f' (measured by the run of ' \
            f'{earlier["load"]["start"]} load: {results["memory_from"]})'
    for method in methods:
        if args.memory_from:
            train[method] = {k: earlier['train'][method][k]
                             for k in ('peak_mib', 'trainable')}
        elif device.type == 'cuda':
            train[method] = measure_peak_memory(bench, method, args.device)
            torch.cuda.empty_cache()
        else:
            train[method] = in_subprocess(
                measure_peak_memory, bench, method, args.device,
                args.keep_denormals,
                env=None if args.heap_rss else LIVE_TENSORS_ENV)
        print(method, train[method], flush=True)
    step_seconds, results['skipped_steps'] = measure_step_times(
        bench, methods, args.device, repeats)
    flops = None if args.skip_flops else count_step_flops(bench, methods,
                                                          args.device)
    results['train'] = add_ratios(train, step_seconds, flops)
    for method, r in train.items():
        print(method, r, flush=True)
    results['inference'] = {} if args.skip_inference or args.setting \
        else bench_inference(bench, device,
                             results['timed_calls']['inference'])
    results['load']['end'] = load_average()
    print('\n'.join(write_results(results, args.out_dir)))
    plot(results, args.out_dir)
    write_index(args.out_dir)


if __name__ == '__main__':
    main()
