"""LoRand (Yin et al., "1% VS 100%", CVPR 2023): a bottleneck adapter whose
projections are sums of low-rank products ``A g B``, placed like the Houlsby
adapter on the attention and MLP branch outputs (fused path:
:mod:`mmadapter.ops.lorand`)."""
import math
from typing import Dict, Sequence

import torch
import torch.nn as nn

from mmadapter.ops.lorand import lorand_fused
from mmadapter.registry import ADAPTERS
from .base import (
    AdapterModule,
    AdapterSpec,
    build_activation,
    check_float,
    check_impl,
    check_int,
    check_sites,
    with_impl,
)


class MultiBranchLowRank(nn.Module):
    """``x -> sum_i (x A_i) g_i B_i + bias`` with A_i: in x r, g_i: r x r,
    B_i: r x out."""

    def __init__(self, in_features: int, out_features: int, rank: int,
                 branches: int):
        super().__init__()
        self.A = nn.Parameter(torch.empty(branches, in_features, rank))
        self.g = nn.Parameter(torch.empty(branches, rank, rank))
        self.B = nn.Parameter(torch.empty(branches, rank, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.A, self.g, self.B):
            for branch in p:
                nn.init.kaiming_uniform_(branch, a=math.sqrt(5))
        nn.init.zeros_(self.bias)

    def weight(self) -> torch.Tensor:
        """The (in, out) matrix the branches sum to."""
        return torch.einsum('nir,nrs,nso->io', self.A, self.g, self.B)

    def factors(self):
        """``(M, N)`` with ``M @ N == weight()``: M = [A_1 g_1 | ... ] (in x
        branches*rank), N = [B_1; ...] (branches*rank x out): the fused path
        multiplies through these thin factors."""
        branches, _, rank = self.A.shape
        left = torch.bmm(self.A, self.g).transpose(0, 1).reshape(
            -1, branches * rank)
        return left, self.B.reshape(branches * rank, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight() + self.bias


class LoRandAdapter(AdapterModule):
    """``x + up(act(down(x)))`` with multi-branch low-rank projections."""

    fused_forward = lorand_fused

    def __init__(self, embed_dims: int, hidden_ratio: float, rank: int,
                 branches: int, activation: str):
        super().__init__()
        hidden = max(1, int(embed_dims * hidden_ratio))
        self.down_proj = MultiBranchLowRank(embed_dims, hidden, rank, branches)
        self.act = build_activation('LoRand', activation)
        self.up_proj = MultiBranchLowRank(hidden, embed_dims, rank, branches)

    def reset_parameters(self) -> None:
        self.down_proj.reset_parameters()
        self.up_proj.reset_parameters()

    def forward(self, x: torch.Tensor, hw_shape=None) -> torch.Tensor:
        fast = self.fast_path(x)  # impl (mmadapter.ops)
        if fast is not None:
            return fast(x, hw_shape)
        return x + self.up_proj(self.act(self.down_proj(x)))


@ADAPTERS.register_module()
class LoRand(AdapterSpec):
    """LoRand config.

    Args:
        hidden_ratio: hidden width as a fraction of C (1/2).
        rank: rank of each branch (8).
        branches: low-rank branches summed per projection (4).
        activation: 'gelu' (default), 'relu' or 'silu'.
        sites: ('attn_branch', 'ffn_branch') as in the paper.
        impl: 'auto' (default), 'plain', 'fused' or 'compiled': which path
            runs (docs/fast_paths.md).
    """

    def __init__(self, hidden_ratio: float = 0.5, rank: int = 8,
                 branches: int = 4, activation: str = 'gelu',
                 sites: Sequence[str] = ('attn_branch', 'ffn_branch'),
                 impl: str = 'auto'):
        self.hidden_ratio = check_float('LoRand', 'hidden_ratio',
                                        hidden_ratio, 1e-3, 4.0)
        self.rank = check_int('LoRand', 'rank', rank)
        self.branches = check_int('LoRand', 'branches', branches)
        build_activation('LoRand', activation)
        self.activation = activation
        self.sites = check_sites('LoRand', sites)
        self.impl = check_impl('LoRand', impl)

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        return with_impl(self.impl, {
            site: LoRandAdapter(embed_dims, self.hidden_ratio, self.rank,
                                self.branches, self.activation)
            for site in self.sites
        })
