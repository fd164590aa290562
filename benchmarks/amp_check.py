"""Mixed-precision stability of Mona and LoRA: a short training run of the
adapted backbone under autocast (fp16 with dynamic loss scaling on CUDA,
bf16 on CPU) on a fixed synthetic regression task; fails on any non-finite
loss or gradient and reports the loss curve.

    python benchmarks/amp_check.py [--steps 100] [--arch swin-b|tiny]
"""
import argparse
import json
import math
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmadapter  # noqa: E402,F401
from mmadapter.backbones import AdapterSwinTransformer  # noqa: E402

ARCHS = {
    'swin-b': dict(embed_dims=128, depths=(2, 2, 18, 2),
                   num_heads=(4, 8, 16, 32)),
    'tiny': dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8)),
}
ADAPTERS = {
    'Mona': dict(type='Mona', bottleneck=64),
    'LoRA': dict(type='LoRA', rank=64, alpha=1),
}


def run(method, arch, steps, size, device):
    torch.manual_seed(0)
    model = AdapterSwinTransformer(**ARCHS[arch], adapter=ADAPTERS[method])
    model.init_weights()
    model.to(device).train()
    head = torch.nn.Conv2d(model.num_features[-1], 1, 1).to(device)
    params = [p for p in model.parameters() if p.requires_grad] + list(
        head.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05)
    cuda = device.type == 'cuda'
    dtype = torch.float16 if cuda else torch.bfloat16
    scaler = torch.amp.GradScaler('cuda', enabled=cuda)
    x = torch.randn(2, 3, size, size, device=device)
    target = torch.randn(2, 1, size // 32, size // 32, device=device)
    losses = []
    for step in range(steps):
        with torch.autocast(device.type, dtype=dtype):
            pred = head(model(x)[-1])
        loss = torch.nn.functional.mse_loss(pred.float(), target)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grads_finite = all(torch.isfinite(p.grad).all() for p in params
                           if p.grad is not None)
        if not math.isfinite(loss.item()) or (not cuda and not grads_finite):
            raise RuntimeError(f'{method}: non-finite loss/gradient at step '
                               f'{step}: {loss.item()}')
        scaler.step(optimizer)  # skips steps whose fp16 gradients overflowed
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return dict(method=method, dtype=str(dtype), first=losses[0],
                last=losses[-1], min=min(losses), steps=steps,
                all_finite=all(math.isfinite(v) for v in losses))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--steps', type=int, default=100)
    parser.add_argument('--arch', default='tiny', choices=sorted(ARCHS))
    parser.add_argument('--size', type=int, default=128)
    parser.add_argument('--device', default='cuda'
                        if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args()
    device = torch.device(args.device)
    results = [run(m, args.arch, args.steps, args.size, device)
               for m in ADAPTERS]
    print(json.dumps(results, indent=2))
    assert all(r['all_finite'] and r['last'] < r['first'] for r in results)


if __name__ == '__main__':
    main()
