"""What drawing dropout masks from bernoulli_'s own random words
(``dropout_ops.dropout_mask``) saves: per million values, and per training step
of each method with dropout, against ``bernoulli_`` itself, the two taking
their calls in turn in one steady-heap process (benchmarks/bench_timing.py).

    python benchmarks/mask_draw.py [--size 512] [--repeats 9]

writes ``MASK_DRAW_cpu_<size>.md``. Both draws give the same masks (tests/
test_fused_ops.py); on a CPU where bernoulli_ is MKL's (Intel, MKL builds)
the library keeps bernoulli_ and there is nothing to compare.
"""
import argparse
import os.path as osp
import statistics
import sys

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from bench_models import build_train_steps  # noqa: E402
from bench_process import run_timed  # noqa: E402
from bench_timing import (  # noqa: E402
    flush_denormals,
    load_average,
    machine_name,
    round_robin_samples,
)
from mmadapter.ops import dropout as dropout_ops  # noqa: E402

METHODS = ('Mona', 'Houlsby', 'AdaptFormer')
_words_check = dropout_ops._bernoulli_is_serial


def with_draw(fn, words: bool):
    """``fn`` run with the words draw on (``words``) or bernoulli_."""
    def call():
        dropout_ops._bernoulli_is_serial = (
            _words_check if words else lambda: False)
        try:
            return fn()
        finally:
            dropout_ops._bernoulli_is_serial = _words_check
    return call


def measure(size, repeats):
    cpu = torch.device('cpu')

    def draw():
        return dropout_ops.dropout_mask((1 << 20, ), 0.1, True, cpu)

    draws = {'bernoulli_': with_draw(draw, False),
             'words': with_draw(draw, True)}
    per_million = {k: statistics.median(v) for k, v in round_robin_samples(
        draws, cpu, 31, warmup_rounds=3).items()}
    bench = dict(arch='Swin-B', hw=(size, size), batch=1, amp=None)
    steps = build_train_steps(bench, METHODS, cpu)
    calls = {}
    for method, step in steps.items():
        calls[f'{method}|bernoulli_'] = with_draw(step, False)
        calls[f'{method}|words'] = with_draw(step, True)
    samples = round_robin_samples(calls, cpu, repeats, untimed_before=1)
    rows = {}
    for method in METHODS:
        old, new = samples[f'{method}|bernoulli_'], samples[f'{method}|words']
        rows[method] = dict(
            bernoulli=statistics.median(old), words=statistics.median(new),
            saved=statistics.median(a - b for a, b in zip(old, new)))
    return per_million, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--repeats', type=int, default=9)
    parser.add_argument('--out-dir', default=osp.dirname(__file__))
    args = parser.parse_args()
    cpu = torch.device('cpu')
    flush_denormals(cpu, False)
    if not dropout_ops._bernoulli_is_serial():
        sys.exit('this PyTorch/CPU draws bernoulli_ with MKL: dropout_mask '
                 'uses bernoulli_ itself here, nothing to compare')
    load = load_average()
    per_million, rows = run_timed(measure, args.size, args.repeats,
                                  device=cpu)
    lines = [
        f'# Dropout masks: bernoulli_ vs its own random words, '
        f'Swin-B {args.size}x{args.size}', '',
        f'- machine: {machine_name(cpu)}; torch {torch.__version__}, '
        f'{torch.get_num_threads()} thread(s), subnormals flushed, '
        'steady heap (bench_process.STEADY_HEAP_ENV)',
        f'- load average at start: {load}',
        '- one million values: bernoulli_ '
        f'{per_million["bernoulli_"] * 1e3:.2f} ms, words '
        f'{per_million["words"] * 1e3:.2f} ms (medians of 31)',
        f'- training steps: {args.repeats} rounds, the '
        f'{2 * len(METHODS)} step functions in '
        'turn, each timed step after an untimed one; "saved" is the median '
        'of the rounds\' paired differences', '',
        '| method | step, bernoulli_ (s) | step, words (s) | saved (ms) |',
        '|---|---|---|---|',
    ]
    for method, r in rows.items():
        lines.append(f'| {method} | {r["bernoulli"]:.3f} | {r["words"]:.3f} '
                     f'| {r["saved"] * 1e3:+.1f} |')
    text = '\n'.join(lines) + '\n'
    with open(osp.join(args.out_dir, f'MASK_DRAW_cpu_{args.size}.md'),
              'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
