"""Every adapter path computes what the readable forward computes, on a
device: values and gradients of ``impl='fused'`` and ``impl='compiled'``
against ``impl='plain'``, in a small adapted Swin trained as training runs.

    python benchmarks/impl_parity.py --device cpu --out parity_cpu.json
    python benchmarks/impl_parity.py --device cuda --out parity_cuda.json

For every adapter, path, precision and ``with_cp``:

* ``fp32``: forward and backward in float32;
* ``amp``: mixed precision as training runs it: the forward under autocast
  (``--amp-dtype``: fp16 by default on CUDA, bf16 on CPU), the loss scaled
  (as mmengine's AmpOptimWrapper's GradScaler does), the backward outside
  autocast, the gradients unscaled;
* LoRA also merged: the updates folded into the frozen weights (forward and
  input gradient against the unmerged plain path).

The reference is always the plain path without gradient checkpointing in the
same precision, under the same seed (the fused paths draw nn.Dropout's
masks). Inductor draws its own random numbers, so compiled cases run with
dropout off in both. Writes a JSON summary (``--out``); exits 1 on a
mismatch.
"""
import argparse
import json
import os.path as osp
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmadapter  # noqa: E402,F401
from mmadapter.backbones import AdapterSwinTransformer  # noqa: E402

ADAPTERS = {
    'Mona': dict(type='Mona', bottleneck=16),
    'Houlsby': dict(type='Houlsby', bottleneck=16),
    'AdaptFormer': dict(type='AdaptFormer', bottleneck=16),
    'LoRA': dict(type='LoRA', rank=4, alpha=2),
    'LoRand': dict(type='LoRand', rank=2, branches=2),
}
PATHS = ('fused', 'compiled')
#: Largest allowed error, relative to the reference tensor's largest
#: magnitude: float32 rounding, and what a half-precision forward leaves.
TOLERANCES = {'fp32': 1e-4, 'fp16': 1e-2, 'bf16': 5e-2}
LOSS_SCALE = 2.0**10
TINY_SWIN = dict(embed_dims=32, depths=(2, 2), num_heads=(1, 2),
                 window_size=4, strides=(4, 2), out_indices=(0, 1),
                 drop_path_rate=0.0)


def build(adapter, with_cp, dropout, device, seed=0):
    cfg = dict(ADAPTERS[adapter])
    if not dropout and adapter != 'LoRand':  # LoRand has no dropout
        cfg['dropout'] = 0.0
    torch.manual_seed(seed)
    model = AdapterSwinTransformer(**TINY_SWIN, adapter=cfg, with_cp=with_cp)
    with torch.no_grad():  # off their init: zero up projections hide errors
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(device).train()


def step(model, x, amp_dtype, merged=False):
    """(outputs, gradients by name) of one training step's backward, as
    training runs it."""
    torch.manual_seed(1)  # the same dropout masks on every path
    x = x.clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=amp_dtype,
                        enabled=amp_dtype is not None):
        outs = model(x)
        loss = sum((o.float() * torch.linspace(
            -1, 1, o.numel(), device=x.device).view_as(o)).sum()
            for o in outs)
    scale = LOSS_SCALE if amp_dtype is not None else 1.0
    (loss * scale).backward()  # outside autocast
    grads = {'input': x.grad / scale}
    if not merged:
        grads.update({n: p.grad / scale for n, p in model.named_parameters()
                      if p.requires_grad})
    return [o.detach().float() for o in outs], grads


def relative_error(results, reference):
    """The largest error of any output or gradient, relative to the
    reference tensor's largest magnitude; and the tensor it is in."""
    (outs, grads), (ref_outs, ref_grads) = results, reference
    if grads.keys() != ref_grads.keys():
        return float('inf'), 'gradients of other tensors'
    pairs = [(f'output {i}', a, b) for i, (a, b) in
             enumerate(zip(outs, ref_outs))]
    pairs += [(name, grads[name], ref_grads[name]) for name in ref_grads]
    worst, where = 0.0, ''
    for name, a, b in pairs:
        if (a is None) != (b is None):
            return float('inf'), name
        if a is None:
            continue
        a, b = a.float(), b.float()
        if not torch.isfinite(a).all():
            return float('inf'), name
        err = ((a - b).abs().max() /
               b.abs().max().clamp_min(1e-12)).item()
        if err > worst:
            worst, where = err, name
    return worst, where


def cases(adapters, paths, amp_name):
    for adapter in adapters:
        for precision in ('fp32', amp_name):
            for with_cp in (False, True):
                for path in paths:
                    yield adapter, path, precision, with_cp, False
        if adapter == 'LoRA':
            for precision in ('fp32', amp_name):
                for path in paths:
                    yield adapter, path, precision, False, True


def run(device, adapters, paths, amp_name, sizes):
    amp_dtypes = {'fp32': None, 'fp16': torch.float16,
                  'bf16': torch.bfloat16}
    rows = []
    for adapter, path, precision, with_cp, merged in cases(
            adapters, paths, amp_name):
        dropout = path != 'compiled'
        amp_dtype = amp_dtypes[precision]
        start = time.perf_counter()
        worst, where = 0.0, ''
        for size in sizes:  # detection's images differ in size
            x = torch.randn(1, 3, *size, device=device)
            reference_model = build(adapter, False, dropout, device)
            reference_model.set_adapter_impl('plain')
            model = build(adapter, with_cp, dropout, device)
            model.set_adapter_impl(path)
            if merged:
                model.merge_lora()
            reference = step(reference_model, x, amp_dtype, merged)
            err, at = relative_error(step(model, x, amp_dtype, merged),
                                     reference)
            if err >= worst:
                worst, where = err, f'{at} at {size[0]}x{size[1]}'
        tol = TOLERANCES[precision]
        rows.append(dict(adapter=adapter + (' (merged)' if merged else ''),
                         path=path, precision=precision, with_cp=with_cp,
                         dropout=dropout, max_relative_error=worst,
                         worst_at=where, tolerance=tol, ok=worst <= tol,
                         seconds=round(time.perf_counter() - start, 2)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--paths', nargs='+', choices=PATHS,
                        default=list(PATHS))
    parser.add_argument('--adapters', nargs='+', choices=list(ADAPTERS),
                        default=list(ADAPTERS))
    parser.add_argument('--amp-dtype', choices=('fp16', 'bf16'),
                        help='default: fp16 on CUDA, bf16 on CPU')
    parser.add_argument('--sizes', nargs='+', type=int,
                        default=[64, 64, 96, 64],
                        help='input sizes, as height width pairs')
    parser.add_argument('--out', default=None, help='JSON summary')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is visible to torch')
    if len(args.sizes) % 2:
        parser.error('--sizes takes height width pairs')
    amp_name = args.amp_dtype or ('fp16' if args.device == 'cuda'
                                  else 'bf16')
    sizes = list(zip(args.sizes[0::2], args.sizes[1::2]))
    rows = run(torch.device(args.device), args.adapters, args.paths,
               amp_name, sizes)
    summary = dict(device=args.device, torch=torch.__version__,
                   machine=torch.cuda.get_device_name()
                   if args.device == 'cuda' else 'cpu',
                   amp_dtype=amp_name, loss_scale=LOSS_SCALE, sizes=sizes,
                   cases=rows, ok=all(r['ok'] for r in rows))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=1)
    bad = [r for r in rows if not r['ok']]
    for r in bad:
        print(f'MISMATCH {r["adapter"]} {r["path"]} {r["precision"]} '
              f'with_cp={r["with_cp"]}: {r["max_relative_error"]:.2e} > '
              f'{r["tolerance"]:.0e} ({r["worst_at"]})', file=sys.stderr)
    print(f'{len(rows) - len(bad)}/{len(rows)} cases equal to the plain '
          'path', flush=True)
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
