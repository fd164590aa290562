"""LoRA (Hu et al., ICLR 2022) on the Linear layers of a block.

A wrapped layer keeps its frozen ``weight`` and ``bias`` under the same names
(so stock checkpoints load unchanged) and adds ``scaling * B A x`` on chosen
output slices: on a fused qkv layer each of q, k, v can be adapted on its own.
The fused path (:mod:`mmadapter.ops.lora`) computes the same as one autograd
function.
"""
import math
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmadapter.ops import FastPaths
from mmadapter.ops.lora import lora_fused
from mmadapter.registry import ADAPTERS
from .base import (
    LINEAR_TARGETS,
    AdapterConfigError,
    AdapterModule,
    AdapterSpec,
    check_float,
    check_impl,
    check_int,
)


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


class LoRALinear(FastPaths, nn.Linear):
    """A Linear layer with low-rank updates on some of its output slices.

    Args:
        base: the Linear layer to wrap; its parameters are reused, not copied.
        slices: output slices to adapt, by name, e.g.
            ``{'q': slice(0, C), 'v': slice(2 * C, 3 * C)}``.
    """

    fused_forward = lora_fused

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
        if self.merged:  # the updates are in the weight
            return F.linear(x, self.weight, self.bias)
        fast = self.fast_path(x)  # impl (mmadapter.ops)
        if fast is not None:
            return fast(x)
        out = F.linear(x, self.weight, self.bias)
        pieces, start = [], 0
        for name, sl in sorted(self.slices.items(), key=lambda s: s[1].start):
            pieces.append(out[..., start:sl.start])
            pieces.append(out[..., sl] + self.lora[name](x))
            start = sl.stop
        pieces.append(out[..., start:])
        return torch.cat(pieces, dim=-1)

    def has_fused_path(self) -> bool:
        # the fused function draws no dropout mask
        return all(isinstance(d.dropout, nn.Identity)
                   for d in self.lora.values())

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
        dropout: dropout on the input of the low-rank path (0; the fused
            path runs without it, so with dropout every path is 'plain').
        impl: 'auto' (default), 'plain', 'fused' or 'compiled': which path
            runs (docs/fast_paths.md).
    """

    def __init__(self, rank: int = 64, alpha: float = 1.0,
                 targets: Sequence[str] = ('q', 'v'), dropout: float = 0.0,
                 impl: str = 'auto'):
        self.rank = check_int('LoRA', 'rank', rank)
        self.alpha = check_float('LoRA', 'alpha', alpha)
        self.dropout = check_float('LoRA', 'dropout', dropout, 0.0, 1.0,
                                   high_inclusive=False)
        self.linear_targets = expand_lora_targets(targets)
        self.impl = check_impl('LoRA', impl)

    def wrap_linear(self, linear: nn.Linear,
                    slices: Dict[str, slice]) -> nn.Module:
        layer = LoRALinear(linear, slices, self.rank, self.alpha,
                           self.dropout)
        layer.set_impl(self.impl)
        return layer


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
