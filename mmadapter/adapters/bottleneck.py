"""The Linear -> activation -> dropout -> Linear bottleneck shared by the
Houlsby adapter and AdaptFormer (fused path:
:mod:`mmadapter.ops.bottleneck`)."""
import math

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

from mmadapter.ops.bottleneck import bottleneck_fused
from .base import AdapterModule, build_activation

#: How the two projections start:
#: ``trunc_normal``: both trunc_normal(std=0.02), zero biases (the Mona code);
#: ``lora``: kaiming-uniform down, zero up projection and biases, so the
#:   branch outputs exactly zero at init (AdaptFormer's original);
#: ``houlsby``: both normal(std=1e-3), zero biases (near-identity, Houlsby).
BOTTLENECK_INITS = ('trunc_normal', 'lora', 'houlsby')


class BottleneckAdapter(AdapterModule):
    """``skip * x + scale * up(dropout(act(down(x))))`` on (B, N, C) tokens.

    ``scale`` is a fixed number, or learnable (a scalar initialised to 1)
    when ``learnable_scale=True``.
    """

    fused_forward = bottleneck_fused

    def __init__(self, embed_dims: int, bottleneck: int, activation: str,
                 dropout: float, skip: bool, scale: float = 1.0,
                 learnable_scale: bool = False, init: str = 'trunc_normal'):
        super().__init__()
        self.skip = skip
        self.init = init
        self.down_proj = nn.Linear(embed_dims, bottleneck)
        self.act = build_activation(type(self).__name__, activation)
        self.dropout = nn.Dropout(dropout)
        self.up_proj = nn.Linear(bottleneck, embed_dims)
        if learnable_scale:
            self.scale = nn.Parameter(torch.ones(1))
        else:
            self.scale = scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.init == 'lora':
            nn.init.kaiming_uniform_(self.down_proj.weight, a=math.sqrt(5))
            nn.init.zeros_(self.up_proj.weight)
        elif self.init == 'houlsby':
            nn.init.normal_(self.down_proj.weight, std=1e-3)
            nn.init.normal_(self.up_proj.weight, std=1e-3)
        else:
            trunc_normal_(self.down_proj.weight, std=0.02)
            trunc_normal_(self.up_proj.weight, std=0.02)
        nn.init.zeros_(self.down_proj.bias)
        nn.init.zeros_(self.up_proj.bias)
        if isinstance(self.scale, nn.Parameter):
            nn.init.ones_(self.scale)

    def forward(self, x: torch.Tensor, hw_shape=None) -> torch.Tensor:
        fast = self.fast_path(x)  # impl (mmadapter.ops)
        if fast is not None:
            return fast(x, hw_shape)
        out = self.up_proj(self.dropout(self.act(self.down_proj(x))))
        out = out * self.scale
        return x + out if self.skip else out
