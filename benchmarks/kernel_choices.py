"""The CPU kernel choices of the adapters' lean functions against the
alternatives they were measured against (issue #16; docs/benchmarks.md,
"Why the code is as it is"): each pair computes the same tensor (checked),
taking its calls in turn in one steady-heap process.

    python benchmarks/kernel_choices.py [--repeats 31]

writes ``KERNEL_CHOICES_cpu.md``:

* the depthwise weight gradient of Mona's fused 7x7 conv (64 channels, the
  grid of each Swin-B stage at 512, batch 2): one conv per sample
  (``ops.depthwise.depthwise_weight_grad``) against the batch folded into the
  groups' input channels, one conv (at batch 1 both are the same conv);
* a million dropout-mask words: ``random_()`` and a 53-bit mask
  (``ops.dropout``) against ``random_(0, 2**53)``, the same words;
* a million-value dropout multiplier from a bool mask:
  ``ops.dropout.dropout_multiplier`` against ``torch.where``.
"""
import argparse
import math
import os.path as osp
import statistics
import sys
from fractions import Fraction

import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from bench_process import run_timed  # noqa: E402
from bench_timing import (  # noqa: E402
    flush_denormals,
    load_average,
    machine_name,
    round_robin_samples,
)
from mmadapter.ops import dropout as dropout_ops  # noqa: E402
from mmadapter.ops.depthwise import depthwise_weight_grad  # noqa: E402

#: Mona's fused kernel and bottleneck; the patch grids of Swin-B at 512.
KERNEL, CHANNELS, GRIDS = 7, 64, (128, 64, 32, 16)


def folded_weight_grad(x, grad_out, kernel_size, padding):
    """The batch folded into the groups' input channels: one conv (what
    the ops did before)."""
    B, C, H, W = grad_out.shape
    xp = F.pad(x, [padding] * 4)
    if B > 1:
        xp = xp.transpose(0, 1).reshape(1, C * B, *xp.shape[2:])
    grad = F.conv2d(xp, grad_out.transpose(0, 1), groups=C)
    return grad.reshape(C, 1, kernel_size, kernel_size)


def weight_grad_pairs(grids, batches):
    """name -> (lean call, alternative call), on Mona's layouts: the input
    a channels-last view of tokens, the gradient (C, B, H, W) in memory."""
    pairs = {}
    for side in grids:
        for batch in batches:
            x = torch.randn(batch, side, side, CHANNELS).permute(0, 3, 1, 2)
            grad = torch.randn(CHANNELS, batch, side, side).transpose(0, 1)
            pairs[f'{side}x{side}, batch {batch}'] = tuple(
                (lambda fn=fn, x=x, grad=grad: fn(x, grad, KERNEL,
                                                  KERNEL // 2))
                for fn in (depthwise_weight_grad,
                           folded_weight_grad))
    return pairs


def mask_pairs(values):
    keep_below = math.ceil(Fraction(9, 10) * (1 << 53))  # p = 0.1

    def words_masked():
        return dropout_ops._dropped_from_words((values, ), 0.1)

    def words_in_range():
        return torch.empty(values, dtype=torch.int64).random_(
            0, 1 << 53) >= keep_below

    dropped = torch.rand(values) < 0.1
    scale = torch.ones(()).div_(0.9)
    return {
        'mask words': (words_masked, words_in_range),
        'dropout multiplier': (
            lambda: dropout_ops.dropout_multiplier(dropped, 0.1,
                                                   torch.float32),
            lambda: torch.where(dropped, scale.new_zeros(()), scale)),
    }


def check_same(pairs):
    """Each pair gives the same tensor (the mask draws from the same
    generator state)."""
    for name, (lean, other) in pairs.items():
        state = torch.get_rng_state()
        a = lean()
        torch.set_rng_state(state)
        b = other()
        if a.dtype == torch.bool:
            assert torch.equal(a, b), name
        else:
            torch.testing.assert_close(a, b, rtol=1e-4,
                                       atol=1e-4 * b.abs().max().item())


def measure(grids=GRIDS, batches=(2, ), values=1 << 20, repeats=31):
    """name -> (lean seconds, alternative seconds, median paired
    difference), medians over ``repeats`` rounds."""
    cpu = torch.device('cpu')
    pairs = {**weight_grad_pairs(grids, batches), **mask_pairs(values)}
    check_same(pairs)
    calls = {f'{name}|{which}': fn for name, pair in pairs.items()
             for which, fn in zip(('lean', 'other'), pair)}
    samples = round_robin_samples(calls, cpu, repeats, warmup_rounds=3)
    rows = {}
    for name in pairs:
        lean, other = samples[f'{name}|lean'], samples[f'{name}|other']
        rows[name] = (statistics.median(lean), statistics.median(other),
                      statistics.median(a - b for a, b in zip(lean, other)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--repeats', type=int, default=31)
    parser.add_argument('--out-dir', default=osp.dirname(__file__))
    args = parser.parse_args()
    cpu = torch.device('cpu')
    flush_denormals(cpu, False)
    load = load_average()
    rows = run_timed(measure, GRIDS, (2, ), 1 << 20, args.repeats,
                     device=cpu)
    lines = [
        '# CPU kernel choices of the lean functions (issue #16)', '',
        f'- machine: {machine_name(cpu)}; torch {torch.__version__}, '
        f'{torch.get_num_threads()} thread(s), subnormals flushed, '
        'steady heap (bench_process.STEADY_HEAP_ENV)',
        f'- load average at start: {load}',
        f'- medians of {args.repeats} rounds, every call in turn in each; '
        '"difference": the median of the rounds\' paired differences',
        '- depthwise weight gradient: Mona\'s fused 7x7 kernel, 64 '
        'channels; "other" folds the batch into the groups\' input channels '
        '(one conv, as the ops did before; at batch 1 both are the same '
        'conv)', '',
        '| what | mmadapter.ops (ms) | other (ms) | difference (ms) '
        '| other is |',
        '|---|---|---|---|---|',
    ]
    others = {'mask words': 'random_(0, 2**53)',
              'dropout multiplier': 'torch.where'}
    for name, (lean, other, diff) in rows.items():
        what = name if name in others else \
            f'depthwise weight gradient, {name}'
        lines.append(f'| {what} | {lean * 1e3:.2f} | {other * 1e3:.2f} | '
                     f'{diff * 1e3:+.2f} | '
                     f'{others.get(name, "batch folded")} |')
    text = '\n'.join(lines) + '\n'
    with open(osp.join(args.out_dir, 'KERNEL_CHOICES_cpu.md'), 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
