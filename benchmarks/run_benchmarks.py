"""Speed and memory of the adapters, as ratios measured in one run.

    python benchmarks/run_benchmarks.py            # Swin-B, 512x512, batch 1
    python benchmarks/run_benchmarks.py --quick    # tiny Swin (CI runs it)
    python benchmarks/run_benchmarks.py --device cuda
    python benchmarks/run_benchmarks.py --device cuda --setting coco
    python benchmarks/run_benchmarks.py --device cuda --setting coco \\
        --impl compiled

``--impl`` sets the path every adapter runs (``adapter_impl`` of the
backbone; default ``auto``, see docs/fast_paths.md).

Measures (each ratio from timings taken in the same process, so it does not
depend on the machine's absolute speed):
1. Mona module forward+backward, the fused path vs the readable forward
   (impl='plain');
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
glibc's defaults, heap holes included). On CPU the timings run in a fresh
process whose glibc keeps freed memory for reuse, so that, as with CUDA's
caching allocator, no step faults its tensors' pages in again
(``bench_process.STEADY_HEAP_ENV``; ``--default-heap``: glibc's defaults).

Writes ``RESULTS_<run>.md`` (a table, naming the machine, torch version and
input sizes), ``results_<run>.json`` and ``tradeoff_<run>.png`` into
``--out-dir``, and ``RESULTS.md`` there: one row per run found in it.
"""
import argparse
import json
import os.path as osp
import statistics
import sys

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))
sys.path.insert(0, HERE)

import mmadapter  # noqa: E402,F401
from bench_memory import measure_peak_memory, memory_kind  # noqa: E402
from bench_models import (  # noqa: E402
    ARCHS,
    METHODS,
    build_train_steps,
    count_step_flops,
    make_input,
)
from bench_process import LIVE_TENSORS_ENV, heap_kind, in_subprocess, run_timed  # noqa: E402
from bench_report import FLOOR, plot, write_index, write_results  # noqa: E402,E501
from bench_stats import add_ratios  # noqa: E402
from bench_timing import (  # noqa: E402
    flush_denormals,
    load_average,
    machine_name,
    round_robin_samples,
    round_robin_times,
)
from mmadapter.adapters import MonaModule  # noqa: E402
from mmadapter.backbones import AdapterSwinTransformer  # noqa: E402
from mmadapter.ops import IMPLS  # noqa: E402

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


def measure_step_times(bench, methods, device_name, repeats):
    """Each method's training-step times (s) in each round, all models in
    this process taking their steps in turn, and the optimizer steps the
    fp16 loss scaler skipped. Each timed step right after an untimed one of
    the same model, as steps follow each other in training; one warm-up
    round first (the first step allocates the optimizer state). Also the
    minor page faults of each timed step.
    """
    device = torch.device(device_name)
    steps = build_train_steps(bench, methods, device)
    faults = {}
    samples = round_robin_samples(steps, device, repeats, warmup_rounds=1,
                                  untimed_before=1, faults=faults)
    return samples, {m: s.skipped for m, s in steps.items()}, faults


def bench_mona_op(size, device, repeats):
    """One Mona module (Swin-B stage 1: 128 channels, bottleneck 64) on a
    ``size`` x ``size`` grid, forward+backward: readable vs fused path."""
    mona = MonaModule(128, bottleneck=64).to(device).train()
    x = torch.randn(1, size * size, 128, device=device, requires_grad=True)

    def step(impl):
        mona.set_impl(impl)
        mona(x, (size, size)).square().mean().backward()

    times = round_robin_times({'reference': lambda: step('plain'),
                               'fused': lambda: step('fused')}, device,
                              repeats)
    return dict(grid=size, **times,
                speedup=times['reference'] / times['fused'])


def bench_inference(bench, device, repeats):
    arch = ARCHS[bench['arch']]() | dict(adapter_impl=bench.get('impl'))
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
             for name, model in models.items()}, device, repeats,
            untimed_before=1)
    return {name: dict(seconds=t, ratio=t / results['stock'])
            for name, t in results.items()}


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
    parser.add_argument('--impl', choices=IMPLS, default='auto',
                        help='the path every adapter runs (adapter_impl): '
                        "'auto' takes per device the recorded best "
                        '(docs/fast_paths.md)')
    parser.add_argument('--skip-inference', action='store_true')
    parser.add_argument('--keep-denormals', action='store_true',
                        help='on CPU, do not flush subnormal floats to zero '
                        '(see flush_denormals)')
    parser.add_argument('--heap-rss', action='store_true',
                        help='on CPU, measure peak RSS with glibc\'s default '
                        'allocation thresholds (counts heap holes; see '
                        'LIVE_TENSORS_ENV)')
    parser.add_argument('--default-heap', action='store_true',
                        help='on CPU, time with glibc\'s default allocation '
                        'thresholds (large tensors\' pages faulted in again '
                        'each step; see STEADY_HEAP_ENV)')
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
                     batch=setting['batch'], amp=setting['amp'],
                     impl=args.impl)
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
                     hw=(size, size), batch=1, amp=None, impl=args.impl)
        tag = f'{device.type}_{size}'
        targets, margin_targets = TARGETS, MARGIN_TARGETS
        default_methods = tuple(METHODS)
    tag = ('quick_' if args.quick else '') + tag
    if args.impl != 'auto':
        tag += f'_{args.impl}'  # beside, not over, the default run's files
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
    timed = dict(device=device, keep_denormals=args.keep_denormals,
                 default_heap=args.default_heap)
    results['heap'] = heap_kind(device, args.default_heap)
    results['mona_op'] = None if args.setting or args.skip_mona_op \
        else run_timed(bench_mona_op,
                       16 if args.quick else bench['hw'][0] // 4, device,
                       results['timed_calls']['mona_op'], **timed)
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
    step_seconds, results['skipped_steps'], step_faults = run_timed(
        measure_step_times, bench, methods, args.device, repeats, **timed)
    results['page_faults'] = {m: statistics.median(f)
                              for m, f in step_faults.items()}
    flops = None if args.skip_flops else count_step_flops(bench, methods,
                                                          args.device)
    results['train'] = add_ratios(train, step_seconds, flops)
    for method, r in train.items():
        print(method, r, flush=True)
    results['inference'] = {} if args.skip_inference or args.setting \
        else run_timed(bench_inference, bench, device,
                       results['timed_calls']['inference'], **timed)
    results['load']['end'] = load_average()
    print('\n'.join(write_results(results, args.out_dir)))
    plot(results, args.out_dir)
    write_index(args.out_dir)


if __name__ == '__main__':
    main()
