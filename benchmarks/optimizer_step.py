"""The AdamW step of each method's trainable parameters, per implementation.

    python benchmarks/optimizer_step.py                # Swin-B, CPU
    python benchmarks/optimizer_step.py --quick        # tiny Swin (CI)

The training-step benchmark (run_benchmarks.py) steps ``torch.optim.AdamW``
with PyTorch's defaults: on CPU that is the per-tensor loop, on CUDA the
multi-tensor (``foreach``) one. This measures, with the same settings
(``bench_models.ADAMW``) on gradients drawn once, how long one step takes
with the per-tensor loop, ``foreach=True`` and ``fused=True``, so that what the
optimizer adds to a method's margin above the floor (which has no trainable
parameter) can be read apart from what its modules cost. Medians of the
timed steps, the implementations taking their steps in turn. Writes
``OPTIMIZER_<device>[_quick].md``.
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
from bench_models import ADAMW, ARCHS, build_backbone  # noqa: E402
from bench_timing import flush_denormals, machine_name, sync  # noqa: E402

IMPLEMENTATIONS = {
    'per-tensor loop': dict(foreach=False),
    'foreach': dict(foreach=True),
    'fused': dict(fused=True),
}
METHODS = ('Full', 'Mona', 'LoRA', 'AdaptFormer', 'Houlsby', 'LoRand')


def trainable_with_grads(arch, method, device):
    torch.manual_seed(0)
    model = build_backbone(ARCHS[arch](), method).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p).mul_(1e-3)
    return params


def step_times(params, device, repeats):
    """Median seconds of one AdamW step per implementation, each on its own
    copy of ``params`` (same values, same gradients), in turn."""
    optimizers = {}
    for name, kwargs in IMPLEMENTATIONS.items():
        copies = [p.detach().clone().requires_grad_() for p in params]
        for copy, p in zip(copies, params):
            copy.grad = p.grad.clone()
        optimizers[name] = torch.optim.AdamW(copies, **ADAMW, **kwargs)
    times = {name: [] for name in optimizers}
    for round_ in range(repeats + 2):  # two warm-up rounds (state built)
        for name, opt in optimizers.items():
            sync(device)
            start = time.perf_counter()
            opt.step()
            sync(device)
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--out', default=HERE)
    args = parser.parse_args()
    device = torch.device(args.device)
    flush_denormals(device, keep=False)
    arch = 'Swin tiny test arch' if args.quick else 'Swin-B'
    repeats = 2 if args.quick else args.repeats
    names = list(IMPLEMENTATIONS)
    lines = [
        f'# AdamW step per implementation: {args.device}'
        f'{" (quick)" if args.quick else ""}', '',
        f'- machine: {machine_name(device)}',
        f'- torch {torch.__version__}, {torch.get_num_threads()} torch '
        f'thread(s); backbone: {arch}; medians of {repeats} steps per '
        'implementation, in turn', '',
        '| method | tensors | parameters | ' + ' | '.join(
            f'{n} (ms)' for n in names) + ' |',
        '|---|---|---|' + '---|' * len(names)]
    for method in METHODS:
        params = trainable_with_grads(arch, method, device)
        times = step_times(params, device, repeats)
        lines.append(
            f'| {method} | {len(params)} | '
            f'{sum(p.numel() for p in params):,} | ' +
            ' | '.join(f'{times[n] * 1e3:.1f}' for n in names) + ' |')
        print(lines[-1], flush=True)
    suffix = f'{args.device}{"_quick" if args.quick else ""}'
    path = osp.join(args.out, f'OPTIMIZER_{suffix}.md')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    print(f'wrote {path}')


if __name__ == '__main__':
    main()
