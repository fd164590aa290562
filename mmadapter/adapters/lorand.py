"""LoRand (Yin et al., "1% VS 100%", CVPR 2023): a bottleneck adapter whose
projections are sums of low-rank products ``A g B``, placed like the Houlsby
adapter on the attention and MLP branch outputs."""
import math
from typing import Dict, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmadapter.registry import ADAPTERS
from .base import (AdapterModule, AdapterSpec,
                   build_activation, check_float, check_int, check_sites)
from .lean_ops import ACTIVATION_GRADS, ProjectedActLinear


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
        branches*rank), N = [B_1; ...] (branches*rank x out)."""
        branches, _, rank = self.A.shape
        left = torch.bmm(self.A, self.g).transpose(0, 1).reshape(
            -1, branches * rank)
        return left, self.B.reshape(branches * rank, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # through the rank-(branches*rank) factors: on tokens that is
        # (in + out) * branches * rank multiply-adds instead of in * out
        left, right = self.factors()
        return F.linear(x @ left, right.t(), self.bias)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain structure: the summed matrix, then one matmul."""
        return x @ self.weight() + self.bias


class LoRandAdapter(AdapterModule):
    """``x + up(act(down(x)))`` with multi-branch low-rank projections."""

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
        down_left, down_right = self.down_proj.factors()
        up_left, up_right = self.up_proj.factors()
        u = x @ down_left  # (..., branches * rank)
        if type(self.act) in ACTIVATION_GRADS and torch.is_grad_enabled():
            # the C/2-wide hidden layer between the rank-wide factors is
            # recomputed in backward from u, not kept (lean_ops)
            v = ProjectedActLinear.apply(u, down_right.t(),
                                         self.down_proj.bias, up_left.t(),
                                         self.act)
        else:
            v = F.linear(self.act(F.linear(u, down_right.t(),
                                           self.down_proj.bias)),
                         up_left.t())
        # out of place: F.linear's output of 3-d tokens is a view, and an
        # in-place add on it would make autograd rebuild its base in
        # backward (a zero-filled C-wide tensor and two copies, CopySlices)
        return x + F.linear(v, up_right.t(), self.up_proj.bias)

    def reference_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The plain structure (dense summed matrices)."""
        return x + self.up_proj.reference_forward(
            self.act(self.down_proj.reference_forward(x)))


@ADAPTERS.register_module()
class LoRand(AdapterSpec):
    """LoRand config.

    Args:
        hidden_ratio: hidden width as a fraction of C (1/2).
        rank: rank of each branch (8).
        branches: low-rank branches summed per projection (4).
        activation: 'gelu' (default), 'relu' or 'silu'.
        sites: ('attn_branch', 'ffn_branch') as in the paper.
    """

    def __init__(self, hidden_ratio: float = 0.5, rank: int = 8,
                 branches: int = 4, activation: str = 'gelu',
                 sites: Sequence[str] = ('attn_branch', 'ffn_branch')):
        self.hidden_ratio = check_float('LoRand', 'hidden_ratio',
                                        hidden_ratio, 1e-3, 4.0)
        self.rank = check_int('LoRand', 'rank', rank)
        self.branches = check_int('LoRand', 'branches', branches)
        build_activation('LoRand', activation)
        self.activation = activation
        self.sites = check_sites('LoRand', sites)

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        return {
            site: LoRandAdapter(embed_dims, self.hidden_ratio, self.rank,
                                self.branches, self.activation)
            for site in self.sites
        }
