"""Mona's scaled input filter and down projection, for the fused path:
``down(LN(x) * gamma + x * gammax)`` computed in few passes, and its
gradients from ``x`` alone.

Plain autograd keeps two (B, N, C) tensors per Mona for this expression:
``LN(x)`` (for gamma's gradient) and the filtered input (for the
projection's weight gradient). Both are cheap elementwise functions of
``x``, so the fused Mona keeps only what rebuilds ``x`` and recomputes them
in backward (:func:`filtered_projection_grads`); the projection itself is
not recomputed.
"""
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F


class FilterInputs(NamedTuple):
    """The tensors of ``linear(scaled_filter(x, ...), weight, bias)``; the
    four filter parameters are None where Mona has no scaled filter."""
    x: torch.Tensor
    norm_weight: Optional[torch.Tensor]
    norm_bias: Optional[torch.Tensor]
    gamma: Optional[torch.Tensor]
    gammax: Optional[torch.Tensor]
    weight: torch.Tensor
    bias: Optional[torch.Tensor]


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


def filtered_projection_grads(grad_out: torch.Tensor, inputs: FilterInputs,
                              needs: FilterInputs, filter_dtype: torch.dtype,
                              eps: float) -> FilterInputs:
    """Gradients of ``linear(scaled_filter(x, ...), weight, bias)`` for the
    ``inputs`` whose entry in ``needs`` is true (None elsewhere), given the
    output gradient.

    The filter is recomputed from ``x`` in ``filter_dtype`` (the dtype the
    forward's filter had), with its LayerNorm statistics, and taken back by
    hand: one LayerNorm backward kernel for gamma folded into the affine
    parameters, one pass for gammax, instead of autograd's graph of the
    expression. ``inputs.bias`` only gives the bias gradient's dtype.
    """
    x, norm_weight, norm_bias, gamma, gammax, weight, bias = inputs
    grads = dict.fromkeys(FilterInputs._fields)
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
    if needs.weight:
        grads['weight'] = grad_2d.t().mm(
            filtered.to(grad_out.dtype).reshape(-1, C)).to(weight.dtype)
    if needs.bias:
        grads['bias'] = grad_2d.sum(0).to(bias.dtype)
    filter_needs = needs[:5]
    if not any(filter_needs):
        return FilterInputs(**grads)
    grad_filtered = grad_out.matmul(weight.to(grad_out.dtype))
    if norm_weight is None:
        grads['x'] = grad_filtered.to(x.dtype)
        return FilterInputs(**grads)
    grad_filtered = grad_filtered.to(filter_dtype)
    grad_x, grad_w, grad_b = torch.ops.aten.native_layer_norm_backward(
        grad_filtered, x, [C], mean, rstd, *affine,
        [needs.x, needs.norm_weight or needs.gamma,
         needs.norm_bias or needs.gamma])
    if needs.x:
        grads['x'] = grad_x.addcmul_(grad_filtered, gammax.to(filter_dtype))
    if needs.gammax:
        # into the recomputed filter's storage, no longer needed (one C-wide
        # temporary less)
        product = torch.mul(grad_filtered, x, out=filtered)
        grads['gammax'] = product.reshape(-1, C).sum(0).to(gammax.dtype)
    del filtered
    if needs.norm_weight:
        grads['norm_weight'] = (grad_w * gamma).to(norm_weight.dtype)
    if needs.norm_bias:
        grads['norm_bias'] = (grad_b * gamma).to(norm_bias.dtype)
    if needs.gamma:
        grads['gamma'] = (grad_w * norm_weight
                          + grad_b * norm_bias).to(gamma.dtype)
    return FilterInputs(**grads)
