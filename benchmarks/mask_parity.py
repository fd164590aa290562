"""Whether the adapters' dropout masks are nn.Dropout's on this device, seed
for seed, and whether the lean modules then give the reference structures'
outputs and gradients (a check for a lent GPU: CI runs the same on CPU).

    python benchmarks/mask_parity.py --device cuda [--out FILE.json]

For fp32 and the autocast dtype (fp16 on CUDA, bf16 on CPU: the dtype
nn.Dropout sees under autocast):
``ops.dropout.dropout_mask`` against the zeros nn.Dropout leaves in a tensor
of ones, and the device generator's state after each; then Mona (fused,
one autograd function) against its official structure and Houlsby against
its plain modules, output and gradients under one seed. Exits 1 if any
differs.
"""
import argparse
import json
import os.path as osp
import sys

import torch
import torch.nn as nn

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmadapter.adapters import MonaModule, build_adapter  # noqa: E402
from mmadapter.ops.dropout import dropout_mask  # noqa: E402


def rng_state(device):
    return torch.cuda.get_rng_state(device) if device.type == 'cuda' \
        else torch.get_rng_state()


def masks_match(shape, p, dtype, device, seed=0):
    torch.manual_seed(seed)
    ours = dropout_mask(shape, p, True, device, dtype)
    ours_state = rng_state(device)
    torch.manual_seed(seed)
    theirs = nn.Dropout(p)(torch.ones(shape, dtype=dtype,
                                      device=device)) == 0
    return bool(torch.equal(ours, theirs)
                and torch.equal(ours_state, rng_state(device)))


def modules(device):
    """(name, module, lean forward, reference forward, input)."""
    torch.manual_seed(0)
    mona = MonaModule(32, bottleneck=16).to(device).train()
    houlsby = build_adapter(dict(type='Houlsby', bottleneck=16)) \
        .site_modules(32)['attn_branch'].to(device).train()
    for module in (mona, houlsby):
        with torch.no_grad():
            for p in module.parameters():
                p.add_(0.2 * torch.randn_like(p))
    hw = (6, 8)

    def through(module, impl, *args):
        def forward(x):
            module.set_impl(impl)
            return module(x, *args)
        return forward

    return [('Mona', mona, through(mona, 'fused', hw),
             through(mona, 'plain', hw)),
            ('Houlsby', houlsby, through(houlsby, 'fused'),
             through(houlsby, 'plain'))], \
        torch.randn(2, hw[0] * hw[1], 32, device=device)


def run(fn, x, params, autocast_dtype, seed=1):
    torch.manual_seed(seed)
    x = x.clone().requires_grad_()
    for p in params:
        p.grad = None
    with torch.autocast(x.device.type, dtype=autocast_dtype,
                        enabled=autocast_dtype is not None):
        out = fn(x)
    out.float().square().mean().backward()
    return [out.detach().float(), x.grad] + [p.grad for p in params]


def module_parity(device, autocast_dtype):
    pairs, x = modules(device)
    results = {}
    for name, module, lean, reference in pairs:
        params = list(module.parameters())
        got, want = (run(fn, x, params, autocast_dtype)
                     for fn in (lean, reference))
        # relative to each tensor's largest magnitude: different masks
        # differ by whole dropped values, rounding by far less
        worst = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
                    .item() for a, b in zip(got, want))
        results[name] = worst
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--out', default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    # fp16 under CUDA autocast; bf16 under CPU autocast
    dtypes = [torch.float32, torch.float16 if device.type == 'cuda'
              else torch.bfloat16]
    report = {'device': str(device), 'torch': torch.__version__,
              'masks': {}, 'modules': {}}
    ok = True
    for dtype in dtypes:
        name = str(dtype).split('.')[-1]
        same = all(masks_match(shape, p, dtype, device)
                   for shape in ((7, ), (2, 48, 16), (3, 1000, 64))
                   for p in (0.1, 0.5))
        report['masks'][name] = same
        autocast_dtype = None if dtype == torch.float32 else dtype
        worst = module_parity(device, autocast_dtype)
        report['modules'][name] = worst
        tol = 1e-4 if dtype == torch.float32 else 2e-2
        ok &= same and all(v <= tol for v in worst.values())
    report['ok'] = ok
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
