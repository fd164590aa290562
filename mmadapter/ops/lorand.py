"""The fused path of LoRand: its C/2-wide hidden layer, between rank-wide
factors, is recomputed in backward rather than kept.

A LoRand projection ``x @ sum_i A_i g_i B_i`` runs as two thin matmuls
through the factors ``M = [A_1 g_1 | ...]`` and ``N = [B_1; ...]``. Between
the down projection's ``N`` and the up projection's ``M`` sits the hidden
layer, much wider than the factors: :class:`ProjectedActLinear` keeps the
narrow ``u = x M_down`` and rebuilds the hidden layer from it in backward.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .activations import activation_pair
from .precision import compute_dtype, flat


class ProjectedInputs(NamedTuple):
    """The tensors :class:`ProjectedActLinear` differentiates."""
    u: torch.Tensor
    w_in: torch.Tensor
    b_in: Optional[torch.Tensor]
    w_out: torch.Tensor


class ProjectedActLinear(torch.autograd.Function):
    """``linear(act(linear(u, w_in, b_in)), w_out)`` saving ``u`` (not the
    hidden layer) for backward. ``apply(act_module, *ProjectedInputs)``.
    Dtypes as under autocast: computed in
    :func:`~.precision.compute_dtype`'s, gradients in the inputs'."""

    @staticmethod
    def forward(ctx, act_module: nn.Module, *inputs):
        dtype = compute_dtype(inputs[0])
        ctx.act, ctx.act_grad = activation_pair(act_module)
        ctx.dtypes = ProjectedInputs(*(None if t is None else t.dtype
                                       for t in inputs))
        u, w_in, b_in, w_out = (None if t is None else t.to(dtype)
                                for t in inputs)
        ctx.save_for_backward(u, w_in, b_in, w_out)
        return F.linear(ctx.act(F.linear(u, w_in, b_in)), w_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, w_in, b_in, w_out = ctx.saved_tensors
        needs = ProjectedInputs(*ctx.needs_input_grad[1:])
        grad_out = grad_out.to(u.dtype)
        h = F.linear(u, w_in, b_in)
        grad_w_out = flat(grad_out).t().mm(flat(ctx.act(h))) \
            if needs.w_out else None
        grad_h = ctx.act_grad(grad_out.matmul(w_out), h)
        del h
        grads = ProjectedInputs(
            u=grad_h.matmul(w_in) if needs.u else None,
            w_in=flat(grad_h).t().mm(flat(u)) if needs.w_in else None,
            b_in=flat(grad_h).sum(0) if needs.b_in else None,
            w_out=grad_w_out)
        return None, *(None if g is None else g.to(dt)
                       for g, dt in zip(grads, ctx.dtypes))


def lorand_fused(adapter, x: torch.Tensor, hw_shape=None) -> torch.Tensor:
    """The fused path of a :class:`~mmadapter.adapters.LoRandAdapter`
    (``x + up(act(down(x)))``), through the projections' factors."""
    down_left, down_right = adapter.down_proj.factors()
    up_left, up_right = adapter.up_proj.factors()
    u = x @ down_left  # (..., branches * rank)
    v = ProjectedActLinear.apply(adapter.act, u, down_right.t(),
                                 adapter.down_proj.bias, up_left.t())
    # out of place: F.linear's output of 3-d tokens is a view, and an
    # in-place add on it would make autograd rebuild its base in backward
    return x + F.linear(v, up_right.t(), adapter.up_proj.bias)
