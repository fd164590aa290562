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


def autocast_state(device_type: str) -> dict:
    if hasattr(torch, 'get_autocast_dtype'):  # torch >= 2.4
        return dict(device_type=device_type,
                    enabled=torch.is_autocast_enabled(device_type),
                    dtype=torch.get_autocast_dtype(device_type))
    if device_type == 'cpu':
        return dict(device_type='cpu',
                    enabled=torch.is_autocast_cpu_enabled(),
                    dtype=torch.get_autocast_cpu_dtype())
    return dict(device_type=device_type,
                enabled=torch.is_autocast_enabled(),
                dtype=torch.get_autocast_gpu_dtype())


def filtered_projection_grads(grad_out, x, norm_weight, norm_bias, gamma,
                              gammax, weight, needs, autocast: dict,
                              eps: float, bias_dtype):
    """Gradients of ``linear(scaled_filter(x, ...), weight, bias)`` for
    ``(x, norm_weight, norm_bias, gamma, gammax, weight, bias)`` where
    ``needs`` says so (None elsewhere), given the output gradient. The
    filter is recomputed from ``x`` under ``autocast`` (the forward's state,
    so with the forward's values and dtype); ``norm_weight=None`` means no
    filter (``linear(x, weight, bias)``)."""
    scaled = norm_weight is not None
    leaves = [
        t.detach().requires_grad_(need) if t is not None else None
        for t, need in zip((x, norm_weight, norm_bias, gamma, gammax),
                           needs[:5])
    ]
    if scaled:
        with torch.enable_grad(), torch.autocast(**autocast):
            filtered = scaled_filter(*leaves, eps)
    else:
        filtered = x

    # The linear ran in grad_out's dtype (autocast's, or the inputs').
    grad_2d = grad_out.flatten(0, -2)
    grad_weight = grad_bias = None
    if needs[5]:
        grad_weight = grad_2d.t().mm(
            filtered.detach().to(grad_out.dtype).flatten(0, -2)).to(
                weight.dtype)
    if needs[6]:
        grad_bias = grad_2d.sum(0).to(bias_dtype)

    filter_grads = [None] * 5
    if not scaled:
        if needs[0]:
            filter_grads[0] = grad_out.matmul(weight.to(grad_out.dtype)).to(
                x.dtype)
        return (*filter_grads, grad_weight, grad_bias)
    wanted = [leaf for leaf, need in zip(leaves, needs[:5]) if need]
    if wanted:
        grad_filtered = grad_out.matmul(weight.to(grad_out.dtype))
        grads = iter(
            torch.autograd.grad(filtered, wanted,
                                grad_filtered.to(filtered.dtype)))
        filter_grads = [next(grads) if need else None for need in needs[:5]]
    return (*filter_grads, grad_weight, grad_bias)


class FilteredProjection(torch.autograd.Function):
    """``linear(scaled_filter(x, ...), weight, bias)`` saving only ``x``."""

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, gamma, gammax, weight, bias,
                eps):
        filtered = scaled_filter(x, norm_weight, norm_bias, gamma, gammax,
                                 eps)
        ctx.eps = eps
        ctx.autocast = autocast_state(x.device.type)
        ctx.bias_dtype = None if bias is None else bias.dtype
        ctx.save_for_backward(x, norm_weight, norm_bias, gamma, gammax,
                              weight)
        return F.linear(filtered, weight, bias)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        grads = filtered_projection_grads(grad_out, *ctx.saved_tensors,
                                          ctx.needs_input_grad, ctx.autocast,
                                          ctx.eps, ctx.bias_dtype)
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
