"""What the benchmarks train: the Swin architectures, the methods, and one
training step of a freshly built backbone with each."""
import os.path as osp

import torch

from bench_report import FLOOR
from mmadapter.backbones import AdapterSwinTransformer

HERE = osp.dirname(osp.abspath(__file__))


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

AMP_DTYPES = {None: None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


def build_backbone(arch, method, impl=None):
    """``impl``: the path every adapter runs ('auto', 'plain', 'fused',
    'compiled'; None: the adapter's default, 'auto')."""
    if method == FLOOR:
        # The reference point of the issue: a frozen backbone whose input
        # needs a gradient, so backward still flows through every block.
        model = AdapterSwinTransformer(**arch, tuning='fixed')
        model.needs_input_grad = True
        return model
    model = AdapterSwinTransformer(**arch, **METHODS[method],
                                   adapter_impl=impl)
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


#: The AdamW settings every benchmarked step uses (PyTorch's defaults else).
ADAMW = dict(lr=1e-4, weight_decay=0.05)


def make_optimizer(model):
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, **ADAMW) if params else None


def make_input(bench, device):
    return torch.randn(bench['batch'], 3, *bench['hw'], device=device)


def build_train_steps(bench, methods, device) -> dict:
    """Per method, a training-step function of its freshly built backbone
    (same seed for every method)."""
    steps = {}
    for method in methods:
        torch.manual_seed(0)
        model = build_backbone(ARCHS[bench['arch']](), method,
                               bench.get('impl')).to(device).train()
        steps[method] = train_step_fn(model, make_input(bench, device),
                                      make_optimizer(model), bench['amp'])
    return steps


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
