"""The fused path of LoRA: ``linear(x, W, b)`` plus ``scaling * B_i A_i x``
on output slice i, as one autograd function.

Plain autograd builds a full-width delta per slice and, in backward, a
zero-filled full-width gradient per slice (the concatenation's). This
function avoids both and keeps only ``x`` (and ``A x`` where it is cheap):

* with more tokens than twice the input width, the update runs as one
  matmul with the merged weight ``W + scaling * B_i A_i`` (built per call
  from the factors, so gradients reach them): on many tokens that costs
  what the frozen layer costs, where the updates cost ``rank * (in + out)``
  multiply-adds a token per slice. Backward takes the input gradient
  through the merged weight again (rebuilt, not kept);
* with fewer tokens, building the merged weight costs more than it saves:
  one matmul gives every ``A_i x`` and each update is added in place on its
  slice of the stock output.

Values and gradients are those of the readable forward to within float
rounding (the sums are associated differently).
"""
from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .precision import compute_dtype, flat


@dataclass(frozen=True)
class LoRASlices:
    """The output slices a LoRA layer adapts, in order, and the scaling
    their updates share."""
    slices: Tuple[slice, ...]
    scaling: float


def _merged_weight(weight, slices, scaling, As, Bs):
    """``weight`` with ``scaling * B_i A_i`` added on output slice i."""
    merged = weight.clone()
    for sl, A, B in zip(slices, As, Bs):
        merged[sl].addmm_(B, A, alpha=scaling)
    return merged


class LoRALinearFunction(torch.autograd.Function):
    """``apply(LoRASlices, x, weight, bias, A_1, B_1, A_2, B_2, ...)``."""

    @staticmethod
    def forward(ctx, lora: LoRASlices, x, weight, bias, *factors):
        dtype = compute_dtype(x)
        ctx.lora = lora
        ctx.dtypes = [None if t is None else t.dtype
                      for t in (x, weight, bias, *factors)]
        bias = None if bias is None else bias.to(dtype)
        ctx.merged = x.numel() >= 2 * x.shape[-1] ** 2  # tokens >= 2 * in
        if ctx.merged:
            ctx.save_for_backward(x, weight, *factors)
            merged = _merged_weight(weight, lora.slices, lora.scaling,
                                    factors[0::2], factors[1::2])
            return F.linear(x.to(dtype), merged.to(dtype), bias)
        x, weight = x.to(dtype), weight.to(dtype)
        factors = [f.to(dtype) for f in factors]
        out = F.linear(x, weight, bias)
        xa = F.linear(x, torch.cat(factors[0::2]))  # every A_i x at once
        rank = factors[0].shape[0]
        for i, (sl, B) in enumerate(zip(lora.slices, factors[1::2])):
            delta = F.linear(xa[..., i * rank:(i + 1) * rank], B)
            out[..., sl] += delta.mul_(lora.scaling)
        ctx.save_for_backward(x, weight, *factors, xa)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, weight, *factors = ctx.saved_tensors
        xa = None if ctx.merged else factors.pop()
        slices, scaling = ctx.lora.slices, ctx.lora.scaling
        dtype = grad_out.dtype  # the forward's compute dtype
        needs_x, needs_w, needs_b = ctx.needs_input_grad[1:4]
        x = x.to(dtype)
        As, Bs = factors[0::2], factors[1::2]
        rank = As[0].shape[0]
        g2, x2 = flat(grad_out), flat(x)
        cast = [t.to(dtype) for t in factors]
        # The factors' gradients through each slice's full weight gradient
        # G_i = g_i^T x (one wide matmul) where that costs less than
        # through A x and B^T g (four narrow ones): narrow inputs, and the
        # merged path needs B^T g for nothing else.
        through_weight_grad = ctx.merged and x2.shape[1] <= 4 * rank
        grad_xa2 = None if through_weight_grad else torch.cat(
            [g2[:, sl].mm(B) for sl, B in zip(slices, cast[1::2])], dim=1)
        grad_x = grad_w = grad_b = None
        if needs_x:
            if ctx.merged:
                merged = _merged_weight(weight, slices, scaling, As, Bs)
                grad_x = grad_out.matmul(merged.to(dtype))
                del merged
            else:
                grad_x = grad_out.matmul(weight.to(dtype))
                grad_x += (grad_xa2.mm(torch.cat(cast[0::2])).mul_(
                    scaling).view_as(grad_x))
        if needs_w:
            grad_w = g2.t().mm(x2)
        if needs_b:
            grad_b = g2.sum(0)
        factor_grads = []  # A_1, B_1, A_2, B_2...
        if through_weight_grad:
            for sl, A, B in zip(slices, cast[0::2], cast[1::2]):
                weight_grad = g2[:, sl].t().mm(x2)
                factor_grads += [B.t().mm(weight_grad).mul_(scaling),
                                 weight_grad.mm(A.t()).mul_(scaling)]
        else:
            # (tokens, rank * slices)
            xa2 = x2.mm(torch.cat(cast[0::2]).t()) if xa is None \
                else flat(xa)
            grad_a = grad_xa2.t().mm(x2).mul_(scaling)
            for i, sl in enumerate(slices):
                part = slice(i * rank, (i + 1) * rank)
                factor_grads += [grad_a[part],
                                 g2[:, sl].t().mm(xa2[:, part]).mul_(scaling)]
        grads = (grad_x, grad_w, grad_b, *factor_grads)
        return None, *(None if g is None else g.to(dt)
                       for g, dt in zip(grads, ctx.dtypes))


def lora_fused(layer, x: torch.Tensor) -> torch.Tensor:
    """The fused path of an unmerged
    :class:`~mmadapter.adapters.LoRALinear` without LoRA dropout."""
    order = sorted(layer.slices.items(), key=lambda s: s[1].start)
    deltas = [layer.lora[name] for name, _ in order]
    lora = LoRASlices(tuple(sl for _, sl in order), deltas[0].scaling)
    return LoRALinearFunction.apply(
        lora, x, layer.weight, layer.bias,
        *(t for d in deltas for t in (d.A, d.B)))
