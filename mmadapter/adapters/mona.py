"""Mona, the multi-cognitive visual adapter (Yin et al., arXiv 2311.15010).

Faithful to the official code: per-channel scaled input filter
``LN(x) * gamma + x * gammax``, down projection, depthwise multi-scale convs
averaged plus identity, a 1x1 aggregation conv plus identity, GELU, dropout, up
projection, and an own skip connection. Two per block, on the residual stream
after the attention and after the MLP.

The multi-scale conv stage is linear in its input, so ``mean_k(dw_k(y)) + y``
is one depthwise conv whose kernel is the zero-padded mean of the kernels plus
a centred identity, and ``y + conv1x1(y)`` is one 1x1 conv with weight
``W + I``. ``fused=True`` (default) computes it that way; the combined kernels
are built from ``conv1..3`` and ``projector`` at every call, so gradients
reach those parameters exactly and checkpoints keep the reference layout.
"""
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmengine.model.weight_init import trunc_normal_

from mmadapter.registry import ADAPTERS
from .base import (AdapterConfigError, AdapterModule, AdapterSpec,
                   build_activation, check_float, check_int, check_sites)
from .lean_ops import ACTIVATION_GRADS, compute_dtype, dropout_mask
from .mona_function import MonaFunction, fuse_conv_stage
from .scaled_filter import filtered_projection


class MonaOp(nn.Module):
    """Depthwise multi-scale convs (averaged, plus identity), then a 1x1
    aggregation conv plus identity, on (B, C, H, W)."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int] = (3, 5, 7),
                 fused: bool = True):
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.fused = fused
        for i, k in enumerate(self.kernel_sizes, start=1):
            self.add_module(
                f'conv{i}',
                nn.Conv2d(channels, channels, k, padding=k // 2,
                          groups=channels))
        self.projector = nn.Conv2d(channels, channels, 1)
        # The identities the fused kernels add, built once (not saved).
        k_max = max(self.kernel_sizes)
        self.register_buffer('dw_identity',
                             torch.empty(channels, 1, k_max, k_max),
                             persistent=False)
        self.register_buffer('pw_identity',
                             torch.empty(channels, channels, 1, 1),
                             persistent=False)
        self._fill_identities()

    @property
    def depthwise_convs(self):
        return [getattr(self, f'conv{i}')
                for i in range(1, len(self.kernel_sizes) + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused:
            return self._fused_forward(x)
        return self.reference_forward(x)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The structure of the official code, one conv at a time."""
        convs = self.depthwise_convs
        x = sum(conv(x) for conv in convs) / len(convs) + x
        return x + self.projector(x)

    def fused_weights(self) -> Tuple[torch.Tensor, ...]:
        """(depthwise kernel, bias, 1x1 weight, bias) of the fused form."""
        convs = self.depthwise_convs
        return fuse_conv_stage([conv.weight for conv in convs],
                               [conv.bias for conv in convs],
                               self.dw_identity, self.projector.weight,
                               self.projector.bias, self.pw_identity)

    def function_inputs(self) -> Tuple[Tuple[torch.Tensor, ...], list]:
        """What :class:`MonaFunction` takes of this conv stage: the
        identities, and the depthwise convs' (kernel, bias) pairs flat."""
        return (self.dw_identity, self.pw_identity), [
            t for conv in self.depthwise_convs
            for t in (conv.weight, conv.bias)]

    def _fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        dw_w, dw_b, pw_w, pw_b = self.fused_weights()
        x = F.conv2d(x, dw_w, dw_b, padding=max(self.kernel_sizes) // 2,
                     groups=x.shape[1])
        return F.conv2d(x, pw_w, pw_b)

    @torch.no_grad()
    def _fill_identities(self) -> None:
        k_max = self.dw_identity.shape[-1]
        self.dw_identity.zero_()[:, :, k_max // 2, k_max // 2] = 1
        self.pw_identity.zero_()
        self.pw_identity.view(self.pw_identity.shape[:2]).fill_diagonal_(1)

    def reset_parameters(self) -> None:
        for conv in self.depthwise_convs + [self.projector]:
            conv.reset_parameters()
        self._fill_identities()  # also after building on the meta device


class MonaModule(AdapterModule):
    """One Mona on (B, N, C) tokens of a (H, W) patch grid.

    Non-patch tokens (the first ``N - H * W``, e.g. a ViT class token) take
    the same token-wise path (scaled filter, projections, activation) but skip
    the spatial convs, which are defined on the patch grid only.
    """

    def __init__(self, embed_dims: int, bottleneck: int = 64,
                 dropout: float = 0.1, kernel_sizes=(3, 5, 7),
                 scaled_norm: bool = True, activation: str = 'gelu',
                 fused: bool = True, recompute: bool = False,
                 keep_input: bool = False):
        super().__init__()
        self.scaled_norm = scaled_norm
        self.recompute = recompute
        self.keep_input = keep_input
        if scaled_norm:
            self.norm = nn.LayerNorm(embed_dims)
            self.gamma = nn.Parameter(torch.empty(embed_dims))
            self.gammax = nn.Parameter(torch.empty(embed_dims))
        self.down_proj = nn.Linear(embed_dims, bottleneck)
        self.mona_op = MonaOp(bottleneck, kernel_sizes, fused=fused)
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
        if self.recompute and self.training and torch.is_grad_enabled():
            # Keep only the input for backward and recompute the rest.
            return cp.checkpoint(self._forward, x, hw_shape,
                                 use_reentrant=False)
        return self._forward(x, hw_shape)

    def _forward(self, x: torch.Tensor, hw_shape) -> torch.Tensor:
        B, N, _ = x.shape
        H, W = hw_shape
        num_extra = N - H * W
        if num_extra < 0:
            raise ValueError(
                f'Mona got {N} tokens for a {H}x{W} patch grid; it needs at '
                f'least H * W = {H * W}.')
        if self.mona_op.fused and torch.is_grad_enabled() \
                and type(self.act) in ACTIVATION_GRADS:
            # the same computation, keeping for backward its output, h and
            # the dropout mask as bits (mona_function)
            mask = dropout_mask((B, N, self.down_proj.out_features),
                                self.dropout.p, self.dropout.training,
                                x.device, compute_dtype(x))
            norm = (self.norm.weight, self.norm.bias, self.gamma,
                    self.gammax) if self.scaled_norm else (None, ) * 4
            identities, dw_params = self.mona_op.function_inputs()
            projector = self.mona_op.projector
            return MonaFunction.apply(
                x, *norm, self.down_proj.weight, self.down_proj.bias,
                projector.weight, projector.bias, self.up_proj.weight,
                self.up_proj.bias, self.act, mask, self.dropout.p, hw_shape,
                num_extra, self.norm.eps if self.scaled_norm else 0.0,
                self.keep_input, identities, *dw_params)
        identity = x
        if self.scaled_norm:
            h = filtered_projection(x, self.norm.weight, self.norm.bias,
                                    self.gamma, self.gammax,
                                    self.down_proj.weight,
                                    self.down_proj.bias, self.norm.eps)
        else:
            h = self.down_proj(x)
        C = h.shape[-1]
        # (B, HW, C) tokens as a (B, C, H, W) grid. On CPU keep them
        # channels-last (a free view): oneDNN's depthwise backward is ~15x
        # faster in that layout. On GPU, cuDNN's contiguous layout measured
        # faster (benchmarks/RESULTS_cuda_512.md).
        patches = h[:, num_extra:] if num_extra else h
        patches = patches.reshape(B, H, W, C).permute(0, 3, 1, 2)
        if patches.is_cuda:
            patches = patches.contiguous()
        patches = self.mona_op(patches).permute(0, 2, 3, 1).reshape(
            B, H * W, C)
        h = torch.cat([h[:, :num_extra], patches], dim=1) \
            if num_extra else patches
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
        fused: compute the conv stage as one depthwise and one 1x1 conv
            (same values and gradients, faster).
        recompute: in training, keep only each Mona's input for backward and
            recompute its activations there (same values and gradients). The
            default keeps no full-width tensor of its own (see
            :mod:`.mona_function`) but three bottleneck-wide ones and a
            mask; this keeps the C-wide input instead, so it saves memory
            only where three bottleneck widths exceed the channels, at the
            cost of re-running the module (Swin-B 512: +0.016 of Full's
            peak memory and +0.07-0.08 of its step time vs the default,
            benchmarks/RESULTS_cpu_512*.md).
        keep_input: keep each Mona's input for backward instead of
            rebuilding it there from the Mona's output (which the next
            LayerNorm keeps anyway) minus its update: gradients bit-identical
            to the reference structure's instead of equal to within that
            subtraction's rounding, for one C-wide tensor more per Mona
            (about 0.04 of Full's peak memory on Swin-B).
    """

    def __init__(self, bottleneck: int = 64, dropout: float = 0.1,
                 kernel_sizes: Sequence[int] = (3, 5, 7),
                 scaled_norm: bool = True, activation: str = 'gelu',
                 sites: Sequence[str] = ('post_attn', 'post_ffn'),
                 fused: bool = True, recompute: bool = False,
                 keep_input: bool = False):
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
        self.fused = bool(fused)
        self.recompute = bool(recompute)
        self.keep_input = bool(keep_input)

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        return {
            site: MonaModule(embed_dims, self.bottleneck, self.dropout,
                             self.kernel_sizes, self.scaled_norm,
                             self.activation, self.fused, self.recompute,
                             self.keep_input)
            for site in self.sites
        }
