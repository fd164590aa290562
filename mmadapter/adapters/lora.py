"""LoRA (Hu et al., ICLR 2022) on the Linear layers of a block.

A wrapped layer keeps its frozen ``weight`` and ``bias`` under the same names
(so stock checkpoints load unchanged) and adds ``scaling * B A x`` on chosen
output slices: on a fused qkv layer each of q, k, v can be adapted on its own.
"""
import math
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from mmadapter.registry import ADAPTERS
from .base import (LINEAR_TARGETS, AdapterConfigError, AdapterModule,
                   AdapterSpec, check_float, check_int)
from .lean_ops import compute_dtype


class LowRankDelta(AdapterModule):
    """``scaling * B(A(dropout(x)))`` with A: in -> rank, B: rank -> out."""

    def __init__(self, in_features: int, out_features: int, rank: int,
                 scaling: float, dropout: float = 0.0):
        super().__init__()
        self.scaling = scaling
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.empty(out_features, rank))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        nn.init.zeros_(self.B)

    def delta_weight(self) -> torch.Tensor:
        return (self.B @ self.A) * self.scaling

    def forward(self, x: torch.Tensor, hw_shape=None) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.A), self.B) \
            * self.scaling


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def _merged_weight(weight, slices, scaling, As, Bs):
    """``weight`` with ``scaling * B_i A_i`` added on output slice i."""
    merged = weight.clone()
    for sl, A, B in zip(slices, As, Bs):
        merged[sl].addmm_(B, A, alpha=scaling)
    return merged


class LoRALinearFunction(torch.autograd.Function):
    """``linear(x, W, b)`` plus ``scaling * B_i A_i x`` on output slice i.

    Where there are more tokens than twice the input width (Swin's first
    three stages at the paper's sizes) it is one matmul with the merged
    weight ``W + scaling * B_i A_i``, built per call from the factors: on
    tokens that costs what the frozen layer costs, where adding the updates
    costs ``rank * (in + out)`` multiply-adds a token per slice. Backward
    takes the input gradient through the merged weight too (built again, not
    kept) and keeps only ``x``; ``A x``, which B's gradient needs, is
    recomputed there (rank-wide), or, where the input is at most four
    times the rank wide, the factors' gradients are taken through each
    slice's full weight gradient. With fewer tokens, building the merged
    weight costs more than it saves: one matmul gives every ``A_i x`` (kept
    for B's gradient), and each update is added in place on its slice of the
    stock output. Either way plain autograd's full-width deltas and
    zero-filled full-width gradients are avoided, and values and gradients
    are those of the reference structure to within float rounding (the sums
    are associated differently).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, slices, scaling, *factors):
        dtype = compute_dtype(x)
        ctx.slices, ctx.scaling = slices, scaling
        ctx.dtypes = [None if t is None else t.dtype
                      for t in (x, weight, bias, *factors)]
        As, Bs = factors[0::2], factors[1::2]
        bias = None if bias is None else bias.to(dtype)
        ctx.merged = x.numel() >= 2 * x.shape[-1] ** 2  # tokens >= 2 * in
        if ctx.merged:
            ctx.save_for_backward(x, weight, *factors)
            merged = _merged_weight(weight, slices, scaling, As, Bs)
            return F.linear(x.to(dtype), merged.to(dtype), bias)
        x, weight = x.to(dtype), weight.to(dtype)
        factors = [f.to(dtype) for f in factors]
        As, Bs = factors[0::2], factors[1::2]
        out = F.linear(x, weight, bias)
        xa = F.linear(x, torch.cat(As))  # (..., rank * len(slices))
        rank = As[0].shape[0]
        for i, (sl, B) in enumerate(zip(slices, Bs)):
            delta = F.linear(xa[..., i * rank:(i + 1) * rank], B)
            out[..., sl] += delta.mul_(scaling)
        ctx.save_for_backward(x, weight, *factors, xa)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, *factors = ctx.saved_tensors
        xa = None if ctx.merged else factors.pop()
        dtype = grad_out.dtype  # the forward's compute dtype
        needs = ctx.needs_input_grad
        x = x.to(dtype)
        As, Bs = factors[0::2], factors[1::2]
        rank = As[0].shape[0]
        g2, x2 = _flat(grad_out), _flat(x)
        grads = [None] * (5 + len(factors))
        cast = [t.to(dtype) for t in factors]
        # The factors' gradients through each slice's full weight gradient
        # G_i = g_i^T x (tokens * out_i * in multiply-adds, one wide matmul)
        # where that costs less than through A x and B^T g (tokens * rank *
        # 2 (out_i + in), four narrow ones); the merged path needs B^T g for
        # nothing else.
        through_weight_grad = ctx.merged and x2.shape[1] <= 4 * rank
        grad_xa2 = None if through_weight_grad else torch.cat(
            [g2[:, sl].mm(B) for sl, B in zip(ctx.slices, cast[1::2])], dim=1)
        if needs[0]:
            if ctx.merged:
                merged = _merged_weight(weight, ctx.slices, ctx.scaling, As,
                                        Bs)
                grads[0] = grad_out.matmul(merged.to(dtype))
                del merged
            else:
                grad_x = grad_out.matmul(weight.to(dtype))
                grad_x += (grad_xa2.mm(torch.cat(cast[0::2])).mul_(
                    ctx.scaling).view_as(grad_x))
                grads[0] = grad_x
        if needs[1]:
            grads[1] = g2.t().mm(x2)
        if needs[2]:
            grads[2] = g2.sum(0)
        if through_weight_grad:
            for i, sl in enumerate(ctx.slices):
                grad_w = g2[:, sl].t().mm(x2)
                grads[5 + 2 * i] = cast[1 + 2 * i].t().mm(grad_w).mul_(
                    ctx.scaling)
                grads[6 + 2 * i] = grad_w.mm(cast[2 * i].t()).mul_(
                    ctx.scaling)
        else:
            # (tokens, rank * len(slices))
            xa2 = x2.mm(torch.cat(cast[0::2]).t()) if xa is None \
                else _flat(xa)
            grad_a = grad_xa2.t().mm(x2).mul_(ctx.scaling)
            for i, sl in enumerate(ctx.slices):
                grads[5 + 2 * i] = grad_a[i * rank:(i + 1) * rank]
                grads[6 + 2 * i] = g2[:, sl].t().mm(
                    xa2[:, i * rank:(i + 1) * rank]).mul_(ctx.scaling)
        dtypes = ctx.dtypes[:3] + [None, None] + ctx.dtypes[3:]
        return tuple(None if g is None else g.to(dt)
                     for g, dt in zip(grads, dtypes))


class LoRALinear(nn.Linear):
    """A Linear layer with low-rank updates on some of its output slices.

    Args:
        base: the Linear layer to wrap; its parameters are reused, not copied.
        slices: output slices to adapt, by name, e.g.
            ``{'q': slice(0, C), 'v': slice(2 * C, 3 * C)}``.
    """

    def __init__(self, base: nn.Linear, slices: Dict[str, slice], rank: int,
                 alpha: float, dropout: float = 0.0):
        nn.Module.__init__(self)
        self.in_features = base.in_features
        self.out_features = base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.slices = dict(slices)
        self.lora = nn.ModuleDict({
            name: LowRankDelta(self.in_features, sl.stop - sl.start, rank,
                               alpha / rank, dropout)
            for name, sl in self.slices.items()
        })
        self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:
            return F.linear(x, self.weight, self.bias)
        order = sorted(self.slices.items(), key=lambda s: s[1].start)
        deltas = [self.lora[name] for name, _ in order]
        if torch.is_grad_enabled() and all(
                isinstance(d.dropout, nn.Identity) for d in deltas):
            return LoRALinearFunction.apply(
                x, self.weight, self.bias, [sl for _, sl in order],
                deltas[0].scaling, *(t for d in deltas for t in (d.A, d.B)))
        return self.reference_forward(x)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain structure: stock output, each slice plus its update."""
        out = F.linear(x, self.weight, self.bias)
        pieces, start = [], 0
        for name, sl in sorted(self.slices.items(), key=lambda s: s[1].start):
            pieces.append(out[..., start:sl.start])
            pieces.append(out[..., sl] + self.lora[name](x))
            start = sl.stop
        pieces.append(out[..., start:])
        return torch.cat(pieces, dim=-1)

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the low-rank updates into ``weight`` (inference speed)."""
        if not self.merged:
            self._add_deltas(sign=1)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the folded updates out of ``weight`` again."""
        if self.merged:
            self._add_deltas(sign=-1)
            self.merged = False

    def _add_deltas(self, sign: int) -> None:
        for name, sl in self.slices.items():
            delta = self.lora[name].delta_weight().to(self.weight.dtype)
            self.weight[sl] += sign * delta

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, lora={sorted(self.slices)}, '
                f'merged={self.merged}')


@ADAPTERS.register_module()
class LoRA(AdapterSpec):
    """LoRA config.

    Args:
        rank: rank of every update (64 in the Mona tables).
        alpha: the update is scaled by ``alpha / rank`` (alpha 1 in the
            tables, a scaling of 1/64).
        targets: which layers to adapt: any of 'q', 'k', 'v' (slices of the
            fused qkv projection), 'qkv' (all three), 'proj', 'fc1', 'fc2'.
            Default ('q', 'v') as in the tables.
        dropout: dropout on the input of the low-rank path (0).
    """

    def __init__(self, rank: int = 64, alpha: float = 1.0,
                 targets: Sequence[str] = ('q', 'v'), dropout: float = 0.0):
        self.rank = check_int('LoRA', 'rank', rank)
        self.alpha = check_float('LoRA', 'alpha', alpha)
        self.dropout = check_float('LoRA', 'dropout', dropout, 0.0, 1.0,
                                   high_inclusive=False)
        self.linear_targets = expand_lora_targets(targets)

    def wrap_linear(self, linear: nn.Linear,
                    slices: Dict[str, slice]) -> nn.Module:
        return LoRALinear(linear, slices, self.rank, self.alpha, self.dropout)


def expand_lora_targets(targets) -> tuple:
    if isinstance(targets, str):
        targets = (targets, )
    expanded = []
    for target in targets:
        names = ('q', 'k', 'v') if target == 'qkv' else (target, )
        for name in names:
            if name not in LINEAR_TARGETS:
                raise AdapterConfigError(
                    f'LoRA target {target!r} matches no layer of a block; '
                    f"valid targets are {list(LINEAR_TARGETS)} and 'qkv'.")
            if name not in expanded:
                expanded.append(name)
    if not expanded:
        raise AdapterConfigError(
            f'LoRA needs at least one target out of {list(LINEAR_TARGETS)}.')
    return tuple(expanded)
