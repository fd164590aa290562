"""Where each method's training step goes above the floor: torch.profiler on
one training step per method (the benchmark's step: forward, backward,
AdamW step), operator self times compared with the floor's ("Fixed (grad
through blocks)": frozen backbone, gradient through every block).

    python benchmarks/profile_step.py                 # Swin-B 512x512, CPU
    python benchmarks/profile_step.py --quick         # tiny Swin (CI)

Writes ``PROFILE_<device>_<size>.md`` into ``--out-dir``: per method, the
operators whose self time grew most over the floor's, and its step total.
A profiler adds a little time to every operator, so the totals read as
relative, and on a shared machine they carry its noise: the operators that
dominate matter, not their last millisecond.

    python benchmarks/profile_step.py --timer dispatch   # CPU, no profiler

times each ATen operator call by itself instead (a dispatch mode around the
kernel): on CPU, torch.profiler doubled a Mona's time and made LayerNorm's
kernels look 3-17x slower than they run (docs/benchmarks.md, "Why the code
is as it is"); this timer's operator times add up to the step's own.
"""
import argparse
import collections
import os
import os.path as osp
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))
sys.path.insert(0, HERE)

from bench_models import FLOOR, METHODS, build_train_steps  # noqa: E402
from bench_process import heap_kind, run_timed  # noqa: E402
from bench_timing import flush_denormals, load_average, machine_name  # noqa: E402


def profile_step(step, device):
    """Operator name -> (self time in ms, calls) of one profiled step."""
    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
    times = {}
    for event in prof.key_averages():
        self_us = event.self_device_time_total if device.type == 'cuda' \
            else event.self_cpu_time_total
        times[event.key] = (self_us / 1e3, event.count)
    return times


class _OperatorTimer(TorchDispatchMode):
    """Wall time and calls of each ATen operator, each call timed around
    its kernel alone (CPU: the kernels run as they are called)."""

    def __init__(self):
        super().__init__()
        self.times = collections.defaultdict(lambda: [0.0, 0])

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        record = self.times[str(func.overloadpacket).replace('.', '::', 1)]
        record[0] += time.perf_counter() - start
        record[1] += 1
        return out


def time_operators(step, device):
    """What :func:`profile_step` gives, from :class:`_OperatorTimer` (CPU
    only: a CUDA call returns before its kernel runs)."""
    with _OperatorTimer() as timer:
        step()
    return {name: (1e3 * t, calls) for name, (t, calls) in
            timer.times.items()}


TIMERS = {'profiler': profile_step, 'dispatch': time_operators}


def profile_methods(bench, methods, device, rounds, timer='profiler'):
    """Per method, the median over ``rounds`` profiled steps of each
    operator's self time. The methods take their profiled steps in turn
    (after two warm-up steps each), so a change in the machine's load
    during the run falls on all of them alike, each right after an
    unprofiled step of its own (its memory as in training:
    bench_timing.round_robin_samples)."""
    steps = build_train_steps(bench, methods, device)
    for step in steps.values():
        step()
        step()
    runs = {method: [] for method in methods}
    for _ in range(rounds):
        for method, step in steps.items():
            step()
            runs[method].append(TIMERS[timer](step, device))
    profiles = {}
    for method, profs in runs.items():
        names = set().union(*profs)
        profiles[method] = {
            name: (statistics.median(p.get(name, (0.0, 0))[0]
                                     for p in profs),
                   statistics.median(p.get(name, (0.0, 0))[1]
                                     for p in profs))
            for name in names}
        print(method, f'{sum(t for t, _ in profiles[method].values()):.0f} '
              'ms of operator self time a step', flush=True)
    return profiles


TIMER_TEXT = {
    'profiler': 'torch.profiler; wall time of each operator on CPU, device '
                'time on CUDA',
    'dispatch': 'each ATen operator call timed around its kernel by a '
                'dispatch mode, no profiler (`--timer dispatch`); '
                'autograd\'s bookkeeping and Python between the calls are '
                'in no row'}


def report(bench, profiles, device, top, load, rounds, flushed=False,
           heap=None, timer='profiler'):
    floor = profiles[FLOOR]
    h, w = bench['hw']
    lines = [
        f'# Profile of one training step: {bench["arch"]}, {w}x{h}, batch '
        f'{bench["batch"]}', '',
        f'- machine: {machine_name(device)}; torch {torch.__version__}, '
        f'device `{device}`, {torch.get_num_threads()} thread(s)'
        + ('; subnormal floats flushed to zero (`--keep-denormals` keeps '
           'them)' if flushed else ''),
        *([f'- the profiling process\'s heap: {heap}'] if heap else []),
        f'- load average (1, 5, 15 min) at start / end: {load[0]} / '
        f'{load[1]}',
        f'- operator self times (ms per step, {TIMER_TEXT[timer]}), '
        f'median over {rounds} profiled steps per method taken in turn; '
        '"extra" is the time above the floor\'s for the same operator. '
        'Backward operators appear under their own names '
        '(`convolution_backward`...)'
        + (', autograd\'s bookkeeping under `autograd::engine::...` rows.'
           if timer == 'profiler' else '.'), '']
    floor_total = sum(t for t, _ in floor.values())
    for method, ops in profiles.items():
        total = sum(t for t, _ in ops.values())
        lines += [f'## {method}', '',
                  f'Operator self time: {total:.0f} ms a step '
                  f'({total - floor_total:+.0f} ms vs the floor).', '']
        if method == FLOOR:
            ranked = sorted(ops.items(), key=lambda kv: -kv[1][0])[:top]
            lines += ['| operator | calls | self ms |', '|---|---|---|']
            lines += [f'| `{name}` | {calls:.0f} | {t:.1f} |'
                      for name, (t, calls) in ranked]
        else:
            extra = {name: (t - floor.get(name, (0.0, 0))[0],
                            calls - floor.get(name, (0.0, 0))[1], t)
                     for name, (t, calls) in ops.items()}
            ranked = sorted(extra.items(), key=lambda kv: -kv[1][0])[:top]
            lines += ['| operator | extra calls | self ms | extra ms |',
                      '|---|---|---|---|']
            lines += [f'| `{name}` | {calls:+.0f} | {t:.1f} | {dt:+.1f} |'
                      for name, (dt, calls, t) in ranked]
        lines.append('')
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
                        help='tiny Swin, 64x64 input')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--size', type=int, default=None)
    parser.add_argument('--rounds', type=int, default=3,
                        help='profiled steps per method (median taken)')
    parser.add_argument('--top', type=int, default=12)
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        default=[m for m in METHODS
                                 if m != 'Mona (recompute=True)'])
    parser.add_argument('--keep-denormals', action='store_true',
                        help='on CPU, do not flush subnormal floats to zero '
                        '(bench_timing.flush_denormals)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch\'s own); one '
                        'thread attributes time more cleanly on a machine '
                        'that other jobs share')
    parser.add_argument('--default-heap', action='store_true',
                        help='on CPU, profile with glibc\'s default '
                        'allocation thresholds '
                        '(bench_process.STEADY_HEAP_ENV)')
    parser.add_argument('--timer', choices=list(TIMERS),
                        default='profiler',
                        help='torch.profiler, or (CPU) each operator call '
                        'timed alone, without the profiler\'s distortions')
    parser.add_argument('--out-dir', default=HERE)
    args = parser.parse_args()
    if args.timer == 'dispatch' and torch.device(args.device).type != 'cpu':
        parser.error('--timer dispatch times CPU kernels (a CUDA call '
                     'returns before its kernel runs): use the profiler '
                     '(the default) on CUDA.')
    if args.threads:
        torch.set_num_threads(args.threads)
    flushed = flush_denormals(torch.device(args.device), args.keep_denormals)
    device = torch.device(args.device)
    size = args.size or (64 if args.quick else 512)
    bench = dict(arch='Swin tiny test arch' if args.quick else 'Swin-B',
                 hw=(size, size), batch=1, amp=None)
    methods = [FLOOR] + [m for m in args.methods if m != FLOOR]
    start = load_average()
    profiles = run_timed(profile_methods, bench, methods, device,
                         args.rounds, args.timer, device=device,
                         keep_denormals=args.keep_denormals,
                         default_heap=args.default_heap)
    lines = report(bench, profiles, device, args.top,
                   (start, load_average()), args.rounds, flushed,
                   heap_kind(device, args.default_heap), args.timer)
    os.makedirs(args.out_dir, exist_ok=True)
    timer = '' if args.timer == 'profiler' else f'_{args.timer}'
    path = osp.join(args.out_dir, ('quick_' if args.quick else '') +
                    f'PROFILE_{device.type}_{size}{timer}.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
