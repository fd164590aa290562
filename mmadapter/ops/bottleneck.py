"""The fused path of the bottleneck adapters (Houlsby, AdaptFormer):
``residual + scale * up(dropout(act(h)))`` keeping for backward only ``h``
and the dropout mask as bits.

Plain autograd keeps, per token, the activation's input, a float dropout
mask and the dropout output. The dropout output (needed for the up
projection's weight gradient) is two elementwise passes from ``h`` and the
mask, so :class:`ActDropoutLinear` recomputes it in backward instead.
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .activations import activation_pair
from .dropout import (
    apply_dropout,
    dropout_mask,
    dropout_multiplier,
    pack_mask,
    unpack_mask,
)
from .precision import add_residual, compute_dtype, flat


@dataclass(frozen=True)
class Tail:
    """What :class:`ActDropoutLinear` computes besides its tensors: the
    activation module, the dropout probability and a fixed output scale."""
    act: nn.Module
    p: float = 0.0
    scale: float = 1.0


class TailInputs(NamedTuple):
    """The tensors :class:`ActDropoutLinear` differentiates, in the order
    ``apply`` takes them (``bias`` and ``residual`` may be None)."""
    h: torch.Tensor
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    residual: Optional[torch.Tensor]


class ActDropoutLinear(torch.autograd.Function):
    """``residual + scale * linear(dropout(act(h)), weight, bias)``.

    ``apply(tail, mask, *TailInputs)``: ``mask`` is the bool mask of
    :func:`~.dropout.dropout_mask` (None: no dropout). As under autocast,
    the activation and dropout run in ``h``'s dtype, the linear in
    :func:`~.precision.compute_dtype`'s. The scale and the residual add are
    done in place on the linear's output (a fresh tensor), which a caller
    could not do on a custom function's output."""

    @staticmethod
    def forward(ctx, tail: Tail, mask, *inputs):
        h, weight, bias, residual = TailInputs(*inputs)
        dtype = compute_dtype(h)
        act, ctx.act_grad = activation_pair(tail.act)
        ctx.act, ctx.tail = act, tail
        ctx.dtypes = TailInputs(*(None if t is None else t.dtype
                                  for t in inputs))
        weight = weight.to(dtype)
        ctx.save_for_backward(h, weight, pack_mask(mask))
        y = act(h)
        y = apply_dropout(y, dropout_multiplier(mask, tail.p, y.dtype))
        out = F.linear(y.to(dtype), weight,
                       None if bias is None else bias.to(dtype))
        if tail.scale != 1:
            out.mul_(tail.scale)
        return out if residual is None else add_residual(out, residual)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        h, weight, packed_mask = ctx.saved_tensors
        needs = TailInputs(*ctx.needs_input_grad[2:])
        keep = dropout_multiplier(unpack_mask(packed_mask, h.shape),
                                  ctx.tail.p, h.dtype)
        grad_residual = grad_out.to(ctx.dtypes.residual) \
            if needs.residual else None
        grad_out = grad_out.to(weight.dtype)
        if ctx.tail.scale != 1:
            grad_out = grad_out * ctx.tail.scale
        grad_h = grad_weight = grad_bias = None
        if needs.weight:
            y = apply_dropout(ctx.act(h), keep).to(grad_out.dtype)
            grad_weight = flat(grad_out).t().mm(flat(y)).to(
                ctx.dtypes.weight)
        if needs.bias:
            grad_bias = flat(grad_out).sum(0).to(ctx.dtypes.bias)
        if needs.h:
            grad_y = grad_out.matmul(weight).to(h.dtype)
            grad_h = ctx.act_grad(apply_dropout(grad_y, keep), h)
        return None, None, *TailInputs(grad_h, grad_weight, grad_bias,
                                       grad_residual)


def act_dropout_linear(h: torch.Tensor, act: nn.Module,
                       dropout: nn.Dropout, linear: nn.Linear,
                       scale: float = 1.0,
                       residual: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
    """``residual + scale * linear(dropout(act(h)))`` through
    :class:`ActDropoutLinear`, with the mask ``dropout`` would draw."""
    mask = dropout_mask(h.shape, dropout.p, dropout.training, h.device,
                        h.dtype)
    return ActDropoutLinear.apply(Tail(act, dropout.p, scale), mask, h,
                                  linear.weight, linear.bias, residual)


def bottleneck_fused(adapter, x: torch.Tensor, hw_shape=None) -> torch.Tensor:
    """The fused path of a :class:`~mmadapter.adapters.BottleneckAdapter`
    (``skip * x + scale * up(dropout(act(down(x))))``)."""
    h = adapter.down_proj(x)
    residual = x if adapter.skip else None
    if isinstance(adapter.scale, torch.Tensor):  # learnable: autograd's
        out = act_dropout_linear(h, adapter.act, adapter.dropout,
                                 adapter.up_proj) * adapter.scale
        return out if residual is None else residual + out
    return act_dropout_linear(h, adapter.act, adapter.dropout,
                              adapter.up_proj, adapter.scale, residual)
