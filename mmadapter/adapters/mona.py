"""Mona, the multi-cognitive visual adapter (Yin et al., arXiv 2311.15010).

The structure of the official code: per-channel scaled input filter
``LN(x) * gamma + x * gammax``, down projection, depthwise multi-scale convs
averaged plus identity, a 1x1 aggregation conv plus identity, GELU, dropout,
up projection, and its own skip connection. Two per block, on the residual
stream after the attention and after the MLP. The fused path
(:mod:`mmadapter.ops.mona`) computes the same as one autograd function.
"""
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_

from mmadapter.ops.mona import mona_fused
from mmadapter.registry import ADAPTERS
from .base import (
    AdapterConfigError,
    AdapterModule,
    AdapterSpec,
    build_activation,
    check_float,
    check_impl,
    check_int,
    check_sites,
    with_impl,
)


class MonaOp(nn.Module):
    """Depthwise multi-scale convs (averaged, plus identity), then a 1x1
    aggregation conv plus identity, on (B, C, H, W)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7)):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        for i, k in enumerate(self.kernel_sizes, start=1):
            self.add_module(
                f'conv{i}',
                nn.Conv2d(channels, channels, k, padding=k // 2,
                          groups=channels))
        self.projector = nn.Conv2d(channels, channels, 1)

    @property
    def depthwise_convs(self):
        return [getattr(self, f'conv{i}')
                for i in range(1, len(self.kernel_sizes) + 1)]

    # Left out of the compiled path (impl='compiled'): traced, the convs'
    # backend choice depends on the grid's size, so every image size would
    # compile anew; they are few large kernels, which compiling does not
    # spare launches of.
    @torch.compiler.disable
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        convs = self.depthwise_convs
        x = sum(conv(x) for conv in convs) / len(convs) + identity
        identity = x
        x = self.projector(x)
        return identity + x

    def reset_parameters(self) -> None:
        for conv in self.depthwise_convs + [self.projector]:
            conv.reset_parameters()


class MonaModule(AdapterModule):
    """One Mona on (B, N, C) tokens of a (H, W) patch grid.

    Non-patch tokens (the first ``N - H * W``, e.g. a ViT class token) take
    the same token-wise path (scaled filter, projections, activation) but skip
    the spatial convs, which are defined on the patch grid only.
    """

    fused_forward = mona_fused

    def __init__(self, embed_dims: int, bottleneck: int = 64,
                 dropout: float = 0.1, kernel_sizes=(3, 5, 7),
                 scaled_norm: bool = True, activation: str = 'gelu',
                 recompute: bool = False, keep_input: bool = False):
        super().__init__()
        self.scaled_norm = scaled_norm
        self.recompute = recompute
        self.keep_input = keep_input  # a setting of the fused path
        if scaled_norm:
            self.norm = nn.LayerNorm(embed_dims)
            self.gamma = nn.Parameter(torch.empty(embed_dims))
            self.gammax = nn.Parameter(torch.empty(embed_dims))
        self.down_proj = nn.Linear(embed_dims, bottleneck)
        self.mona_op = MonaOp(bottleneck, kernel_sizes)
        self.act = build_activation('Mona', activation)
        self.dropout = nn.Dropout(dropout)
        self.up_proj = nn.Linear(bottleneck, embed_dims)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.scaled_norm:
            self.norm.reset_parameters()
            nn.init.constant_(self.gamma, 1e-6)
            nn.init.ones_(self.gammax)
        for proj in (self.down_proj, self.up_proj):
            trunc_normal_(proj.weight, std=0.02)
            nn.init.zeros_(proj.bias)
        self.mona_op.reset_parameters()

    def forward(self, x: torch.Tensor, hw_shape) -> torch.Tensor:
        B, N, _ = x.shape
        H, W = hw_shape
        num_extra = N - H * W  # leading non-patch tokens
        if num_extra < 0:
            raise ValueError(
                f'Mona got {N} tokens for a {H}x{W} patch grid; it needs at '
                f'least H * W = {H * W}.')
        fast = self.fast_path(x)  # impl (mmadapter.ops)
        if fast is not None:
            return fast(x, hw_shape)
        identity = x
        if self.scaled_norm:
            x = self.norm(x) * self.gamma + x * self.gammax
        h = self.down_proj(x)
        C = h.shape[-1]
        extra, patches = h[:, :num_extra], h[:, num_extra:]
        patches = patches.reshape(B, H, W, C).permute(0, 3, 1, 2)
        patches = self.mona_op(patches)
        patches = patches.permute(0, 2, 3, 1).reshape(B, H * W, C)
        h = torch.cat([extra, patches], dim=1) if num_extra else patches
        h = self.dropout(self.act(h))
        return identity + self.up_proj(h)


@ADAPTERS.register_module()
class Mona(AdapterSpec):
    """Mona adapter config.

    Args:
        bottleneck: width of the down projection (64 in the paper).
        dropout: dropout after the activation (0.1 in the official code).
        kernel_sizes: depthwise kernel sizes, averaged ((3, 5, 7); odd sizes).
        scaled_norm: use the scaled LayerNorm input filter (the ablation
            "without the scaled LayerNorm" sets False).
        activation: 'gelu' (official), 'relu' or 'silu'.
        sites: where the Mona modules go; the paper puts one after the
            attention residual and one after the MLP residual.
        recompute: in training, keep only each Mona's input for backward and
            recompute the module there (same values and gradients). The
            fused path keeps no full-width tensor of its own (see
            :mod:`mmadapter.ops.mona`) but three bottleneck-wide ones and a
            mask; this keeps the C-wide input instead, so with the fused
            path it saves memory only where three bottleneck widths exceed
            the channels, at the cost of re-running the module
            (benchmarks/RESULTS_cpu_512.md).
        keep_input: on the fused path, keep each Mona's input for backward
            instead of rebuilding it there from the Mona's output (which the
            next LayerNorm keeps anyway) minus its update: gradients
            bit-identical to the readable forward's instead of equal to
            within that subtraction's rounding, for one C-wide tensor more
            per Mona.
        impl: 'auto' (default), 'plain', 'fused' or 'compiled': which path
            runs (docs/fast_paths.md).
        fused: an option of earlier versions, replaced by ``impl``; refused
            with the ``impl`` value to write instead.
    """

    def __init__(self, bottleneck: int = 64, dropout: float = 0.1,
                 kernel_sizes: Sequence[int] = (3, 5, 7),
                 scaled_norm: bool = True, activation: str = 'gelu',
                 sites: Sequence[str] = ('post_attn', 'post_ffn'),
                 recompute: bool = False, keep_input: bool = False,
                 impl: str = 'auto', fused=None):
        if fused is not None:
            raise AdapterConfigError(
                f'Mona: the option fused={fused!r} was replaced by impl: '
                "write impl='fused' for fused=True, impl='plain' for "
                "fused=False, or leave it out (impl='auto').")
        self.bottleneck = check_int('Mona', 'bottleneck', bottleneck)
        self.dropout = check_float('Mona', 'dropout', dropout, 0.0, 1.0,
                                   high_inclusive=False)
        if not isinstance(kernel_sizes, (list, tuple)) or not kernel_sizes \
                or any(isinstance(k, bool) or not isinstance(k, int)
                       or k < 1 or k % 2 == 0 for k in kernel_sizes):
            raise AdapterConfigError(
                'Mona: kernel_sizes must be a non-empty list of odd positive '
                f'integers such as (3, 5, 7), got {kernel_sizes!r}.')
        self.kernel_sizes = tuple(kernel_sizes)
        self.scaled_norm = bool(scaled_norm)
        self.activation = activation
        build_activation('Mona', activation)
        self.sites = check_sites('Mona', sites)
        self.recompute = bool(recompute)
        self.keep_input = bool(keep_input)
        self.impl = check_impl('Mona', impl)

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        return with_impl(self.impl, {
            site: MonaModule(embed_dims, self.bottleneck, self.dropout,
                             self.kernel_sizes, self.scaled_norm,
                             self.activation, self.recompute,
                             self.keep_input)
            for site in self.sites
        })
