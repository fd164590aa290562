"""Speed and memory of the adapters, as ratios measured in one run.

    python benchmarks/run_benchmarks.py            # Swin-B, 512x512, batch 1
    python benchmarks/run_benchmarks.py --quick    # tiny Swin (CI keeps it working)
    python benchmarks/run_benchmarks.py --device cuda

Measures (each ratio from timings taken in the same process, so it does not
depend on the machine's absolute speed):
1. Mona module forward+backward, fused vs the reference structure;
2. one training step (forward, backward, AdamW step) of the backbone with each
   method vs Full fine-tuning: time ratio and peak memory ratio;
3. inference latency of each adapted backbone vs the stock backbone (LoRA
   merged and unmerged).
Peak memory counts all that training holds (weights, gradients, optimizer
state, activations): ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
growth of the peak resident memory of a fresh subprocess per method from
before the model is built.

Writes ``RESULTS_<run>.md`` (a table, naming the machine, torch version and
input sizes), ``results_<run>.json`` and ``tradeoff_<run>.png`` into
``--out-dir``, and ``RESULTS.md`` there: one row per run found in it.
"""
import argparse
import glob
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

import mmadapter  # noqa: E402,F401
from mmadapter.adapters import MonaOp  # noqa: E402
from mmadapter.backbones import AdapterSwinTransformer  # noqa: E402

SWIN_B = dict(embed_dims=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32),
              drop_path_rate=0.0)
SWIN_TINY = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                 drop_path_rate=0.0)
METHODS = {
    'Full': dict(adapter=None, tuning='full'),
    'Fixed (grad through blocks)': None,  # built specially, see below
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


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def round_robin_times(calls, device, repeats, warmup_rounds=1):
    """Median seconds of each of ``calls`` (name -> function), timed in turn.

    One round calls every function once; a change in the machine's speed
    during the run (other tenants, clock changes) then hits all of them
    alike instead of skewing a ratio.
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
    return {name: statistics.median(t) for name, t in times.items()}


def build_backbone(arch, method):
    if method == 'Fixed (grad through blocks)':
        # The reference point of the issue: a frozen backbone whose input
        # needs a gradient, so backward still flows through every block.
        model = AdapterSwinTransformer(**arch, tuning='fixed')
        model.needs_input_grad = True
        return model
    model = AdapterSwinTransformer(**arch, **METHODS[method])
    model.init_weights()
    model.needs_input_grad = False
    return model


def train_step_fn(model, x, optimizer):

    def step():
        inp = x.requires_grad_(model.needs_input_grad)
        loss = sum(o.float().square().mean() for o in model(inp))
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        inp.grad = None

    return step


def make_optimizer(model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05) \
        if params else None


def current_rss_kb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def measure_peak_memory(arch, method, size, device_name, queue=None):
    """Peak memory (MiB) of training steps, and the trainable count.

    Counts everything training holds: weights, gradients, optimizer state
    and activations (CUDA: peak allocated; CPU: growth of the peak resident
    set over the process's state before the model was built, so each method
    runs in a fresh process).
    """
    torch.manual_seed(0)
    device = torch.device(device_name)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base_kb = current_rss_kb()
    model = build_backbone(arch, method).to(device).train()
    step = train_step_fn(model, torch.randn(1, 3, size, size, device=device),
                         make_optimizer(model))
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


def measure_step_times(arch, methods, size, device_name, repeats):
    """Median training-step time (s) of each method, all models in this
    process taking their steps in turn. Two warm-up rounds: the first step
    allocates the optimizer state and the allocator settles on the second.
    """
    device = torch.device(device_name)
    steps = {}
    for method in methods:
        torch.manual_seed(0)
        model = build_backbone(arch, method).to(device).train()
        x = torch.randn(1, 3, size, size, device=device)
        steps[method] = train_step_fn(model, x, make_optimizer(model))
    return round_robin_times(steps, device, repeats, warmup_rounds=2)


def in_subprocess(fn, *args):
    """Run ``fn`` in a fresh process: CPU peak memory is per process."""
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=fn, args=(*args, queue))
    proc.start()
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


def bench_inference(arch, size, device, repeats):
    x = torch.randn(1, 3, size, size, device=device)
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


def write_results(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tag = results['tag']
    with open(osp.join(out_dir, f'results_{tag}.json'), 'w') as f:
        json.dump(results, f, indent=2)
    lines = [
        f'# Benchmark results: {tag}', '',
        f'- machine: {results["machine"]}',
        f'- torch {results["torch"]}, device `{results["device"]}`',
        f'- backbone: {results["arch"]}, input {results["size"]}x'
        f'{results["size"]}, batch 1; Mona op on a 64-channel '
        f'{results["mona_op"]["grid"]}x{results["mona_op"]["grid"]} grid',
        f'- peak memory: {results["memory_kind"]}',
        '- times: median of {mona_op} (Mona op), {train} (training step) and '
        '{inference} (inference) timed calls, the functions compared taking '
        'their calls in turn in one process, after warm-up calls'.format(
            **results['timed_calls']), '',
        '## 1. Mona conv stage, forward+backward', '',
        '| reference (s) | fused (s) | speed-up |', '|---|---|---|',
        f'| {results["mona_op"]["reference"]:.4f} | '
        f'{results["mona_op"]["fused"]:.4f} | '
        f'{results["mona_op"]["speedup"]:.2f}x |', '',
        '## 2. One training step vs Full fine-tuning', '',
        '| method | trainable | step (s) | time / Full | peak MiB | '
        'memory / Full | target (time, memory) |',
        '|---|---|---|---|---|---|---|'
    ]
    for name, r in results['train'].items():
        target = TARGETS.get(name)
        target_txt = (f'<= {target[0]:.2f}, <= {target[1]:.2f}: '
                      + ('met' if r['time_ratio'] <= target[0]
                         and r['memory_ratio'] <= target[1] else 'NOT met')
                      ) if target else ''
        lines.append(f'| {name} | {r["trainable"]:,} | {r["seconds"]:.3f} | '
                     f'{r["time_ratio"]:.2f}x | {r["peak_mib"]:.0f} | '
                     f'{r["memory_ratio"]:.2f}x | {target_txt} |')
    lines += ['', '## 3. Inference latency vs the stock backbone', '',
              '| backbone | latency (s) | / stock |', '|---|---|---|']
    for name, r in results['inference'].items():
        lines.append(f'| {name} | {r["seconds"]:.4f} | {r["ratio"]:.3f}x |')
    with open(osp.join(out_dir, f'RESULTS_{tag}.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return lines


def write_index(out_dir):
    """``RESULTS.md``: one row per run whose ``results_*.json`` is in
    ``out_dir`` (each run's own table is ``RESULTS_<tag>.md``)."""
    runs = []
    for path in sorted(glob.glob(osp.join(out_dir, 'results_*.json'))):
        with open(path) as f:
            run = json.load(f)
        run['name'] = osp.basename(path)[len('results_'):-len('.json')]
        if run.get('note'):  # e.g. what changed since the run was made
            run['name'] += f' ({run["note"]})'
        runs.append(run)
    shown = [m for m in TARGETS if any(m in r['train'] for r in runs)]

    def ratios(run, method):
        r = run['train'].get(method)
        return (f'{r["time_ratio"]:.2f}x / {r["memory_ratio"]:.2f}x'
                if r else '-')

    lines = [
        '# Benchmark results', '',
        'One row per run (`python benchmarks/run_benchmarks.py`); each run\'s '
        'full table is `RESULTS_<run>.md`, its numbers `results_<run>.json`. '
        'Training columns: step time / peak memory vs Full fine-tuning, '
        'batch 1. Targets (issue #6): Mona <= 0.80x / 0.75x; LoRA, '
        'AdaptFormer, Houlsby <= 0.75x / 0.70x; fused Mona op >= 1.8x; LoRA '
        'merged inference within 2% of the stock backbone.', '',
        '| run | machine | torch | backbone, input | fused Mona op | ' +
        ' | '.join(shown) + ' | LoRA merged inference |',
        '|' + '---|' * (6 + len(shown)),
    ]
    for run in runs:
        merged = run.get('inference', {}).get('LoRA (merged)')
        merged = f'{merged["ratio"]:.3f}x' if merged else '-'
        lines.append(
            f'| {run["name"]} | {run["machine"]} | {run["torch"]} | '
            f'{run["arch"]}, {run["size"]}x{run["size"]} | '
            f'{run["mona_op"]["speedup"]:.2f}x | ' +
            ' | '.join(ratios(run, m) for m in shown) +
            f' | {merged} |')
    with open(osp.join(out_dir, 'RESULTS.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def plot(results, out_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    train = {k: v for k, v in results['train'].items()
             if not k.startswith('Fixed')}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], 'time_ratio', 'step time / Full'),
                           (axes[1], 'memory_ratio', 'peak memory / Full')):
        for name, r in train.items():
            ax.scatter(max(r['trainable'], 1), r[key])
            ax.annotate(name, (max(r['trainable'], 1), r[key]), fontsize=8)
        ax.set_xscale('log')
        ax.set_xlabel('trainable backbone parameters')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f'{results["arch"]} {results["size"]}px, '
                 f'{results["machine"]}', fontsize=9)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, f'tradeoff_{results["tag"]}.png'), dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='tiny Swin, small input, one repeat')
    parser.add_argument('--device', default='cuda'
                        if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--size', type=int, default=None)
    parser.add_argument('--repeats', type=int, default=None)
    parser.add_argument('--out-dir', default=HERE)
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        default=list(METHODS),
                        help='training-step methods to measure (Full is '
                        'always measured)')
    parser.add_argument('--skip-inference', action='store_true')
    args = parser.parse_args()
    device = torch.device(args.device)
    arch, arch_name = (SWIN_TINY, 'Swin tiny test arch') if args.quick \
        else (SWIN_B, 'Swin-B')
    size = args.size or (64 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 5)
    tag = ('quick_' if args.quick else '') + f'{device.type}_{size}'
    results = dict(tag=tag, machine=machine_name(device),
                   torch=torch.__version__, device=str(device),
                   arch=arch_name, size=size,
                   memory_kind='weights + gradients + optimizer state + '
                   'activations; ' + ('torch.cuda.max_memory_allocated'
                                      if device.type == 'cuda' else
                                      'peak RSS growth of a fresh process '
                                      'from before the model is built'))
    # tens of milliseconds a call: enough repeats for a stable median
    results['timed_calls'] = dict(
        mona_op=1 if args.quick else max(10 * repeats, 20), train=repeats,
        inference=repeats + 2)
    results['mona_op'] = bench_mona_op(16 if args.quick else size // 4,
                                       device,
                                       results['timed_calls']['mona_op'])
    print('Mona op:', results['mona_op'], flush=True)
    methods = ['Full'] + [m for m in args.methods if m != 'Full']
    train = {}
    for method in methods:
        if device.type == 'cuda':
            train[method] = measure_peak_memory(arch, method, size,
                                                args.device)
            torch.cuda.empty_cache()
        else:
            train[method] = in_subprocess(measure_peak_memory, arch, method,
                                          size, args.device)
        print(method, train[method], flush=True)
    seconds = measure_step_times(arch, methods, size, args.device, repeats)
    for method, r in train.items():
        r['seconds'] = seconds[method]
        r['time_ratio'] = r['seconds'] / seconds['Full']
        r['memory_ratio'] = r['peak_mib'] / train['Full']['peak_mib']
        print(method, r, flush=True)
    results['train'] = train
    results['inference'] = {} if args.skip_inference else bench_inference(
        arch, size, device, results['timed_calls']['inference'])
    print('\n'.join(write_results(results, args.out_dir)))
    plot(results, args.out_dir)
    write_index(args.out_dir)


if __name__ == '__main__':
    main()
