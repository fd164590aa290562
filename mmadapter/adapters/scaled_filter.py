"""Mona's scaled input filter and down projection, lean in backward.

``down_proj(LN(x) * gamma + x * gammax)`` under plain autograd keeps two
(B, N, C) tensors per Mona for backward: ``LN(x)`` (for gamma's gradient) and
the filtered input (for the projection's weight gradient). With two Monas in
every block that is about half a block's activations again. Both are cheap
elementwise functions of ``x``, which the block keeps anyway, so
:class:`FilteredProjection` keeps only ``x`` and recomputes them in backward.
The projection itself is not recomputed, unlike checkpointing the module.
Values and gradients are those of the plain expression (tested), also under
autocast.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def scaled_filter(x: torch.Tensor, norm_weight: torch.Tensor,
                  norm_bias: torch.Tensor, gamma: torch.Tensor,
                  gammax: torch.Tensor, eps: float) -> torch.Tensor:
    """``LN(x) * gamma + x * gammax`` over the last dimension.

    gamma is folded into LN's affine parameters (C-sized products) and the
    second term is added in the same pass (addcmul): two passes over x
    instead of four, and fewer in backward.
    """
    normed = F.layer_norm(x, (x.shape[-1], ), norm_weight * gamma,
                          norm_bias * gamma, eps)
    if torch.promote_types(torch.promote_types(normed.dtype, x.dtype),
                           gammax.dtype) == normed.dtype:
        # in place (one C-wide temporary less): the LayerNorm's backward
        # does not need its output
        return normed.addcmul_(x, gammax)
    return torch.addcmul(normed, x, gammax)


def filtered_projection_grads(grad_out, x, norm_weight, norm_bias, gamma,
                              gammax, weight, needs, filter_dtype,
                              eps: float, bias_dtype):
    """Gradients of ``linear(scaled_filter(x, ...), weight, bias)`` for
    ``(x, norm_weight, norm_bias, gamma, gammax, weight, bias)`` where
    ``needs`` says so (None elsewhere), given the output gradient.

    The filter is recomputed from ``x`` in ``filter_dtype`` (the dtype the
    forward's filter had), with its LayerNorm statistics, and taken back by
    hand: one LayerNorm backward kernel for gamma folded into the affine
    parameters, one pass for gammax, instead of autograd's graph of the
    expression. ``norm_weight=None`` means no filter
    (``linear(x, weight, bias)``).
    """
    grads = [None] * 7
    C = x.shape[-1]
    if norm_weight is None:
        filtered = x
    else:
        x = x.to(filter_dtype)
        affine = [(p * gamma).to(filter_dtype)
                  for p in (norm_weight, norm_bias)]
        filtered, mean, rstd = torch.native_layer_norm(x, [C], *affine, eps)
        filtered.addcmul_(x, gammax.to(filter_dtype))
    # The linear ran in grad_out's dtype (autocast's, or the inputs').
    grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
    if needs[5]:
        grads[5] = grad_2d.t().mm(
            filtered.to(grad_out.dtype).reshape(-1, C)).to(weight.dtype)
    if needs[6]:
        grads[6] = grad_2d.sum(0).to(bias_dtype)
    if not any(needs[:5]):
        return grads
    grad_filtered = grad_out.matmul(weight.to(grad_out.dtype))
    if norm_weight is None:
        grads[0] = grad_filtered.to(x.dtype)
        return grads
    grad_filtered = grad_filtered.to(filter_dtype)
    grad_x, grad_w, grad_b = torch.ops.aten.native_layer_norm_backward(
        grad_filtered, x, [C], mean, rstd, *affine,
        [needs[0], needs[1] or needs[3], needs[2] or needs[3]])
    if needs[0]:
        grads[0] = grad_x.addcmul_(grad_filtered, gammax.to(filter_dtype))
    if needs[4]:
        # into the recomputed filter's storage, no longer needed (one C-wide
        # temporary less)
        product = torch.mul(grad_filtered, x, out=filtered)
        grads[4] = product.reshape(-1, C).sum(0).to(gammax.dtype)
    del filtered
    if needs[1]:
        grads[1] = (grad_w * gamma).to(norm_weight.dtype)
    if needs[2]:
        grads[2] = (grad_b * gamma).to(norm_bias.dtype)
    if needs[3]:
        grads[3] = (grad_w * norm_weight + grad_b * norm_bias).to(gamma.dtype)
    return grads


class FilteredProjection(torch.autograd.Function):
    """``linear(scaled_filter(x, ...), weight, bias)`` saving only ``x``."""

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, gamma, gammax, weight, bias,
                eps):
        filtered = scaled_filter(x, norm_weight, norm_bias, gamma, gammax,
                                 eps)
        ctx.eps = eps
        ctx.filter_dtype = filtered.dtype
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(x, norm_weight, norm_bias, gamma, gammax,
                              weight)
        return F.linear(filtered, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grads = filtered_projection_grads(grad_out, *ctx.saved_tensors,
                                          ctx.needs_input_grad,
                                          ctx.filter_dtype, ctx.eps,
                                          ctx.bias_dtype)
        return (*grads, None)


def filtered_projection(x: torch.Tensor, norm_weight: torch.Tensor,
                        norm_bias: torch.Tensor, gamma: torch.Tensor,
                        gammax: torch.Tensor, weight: torch.Tensor,
                        bias: Optional[torch.Tensor],
                        eps: float) -> torch.Tensor:
    """``linear(LN(x) * gamma + x * gammax, weight, bias)``; when a gradient
    is needed, through :class:`FilteredProjection`."""
    tensors = (x, norm_weight, norm_bias, gamma, gammax, weight, bias)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad
                                       for t in tensors):
        return FilteredProjection.apply(*tensors, eps)
    return F.linear(
        scaled_filter(x, norm_weight, norm_bias, gamma, gammax, eps), weight,
        bias)
