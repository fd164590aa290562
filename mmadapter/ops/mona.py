"""The fused path of Mona: a whole Mona module as one autograd function
that keeps, per token, its output, three bottleneck-wide tensors and its
dropout mask (as bits) for backward.

``out = x + up(dropout(act(stage(down(filter(x))))))``: ``filter`` the
scaled LayerNorm (:mod:`.scaled_filter`, or none), ``stage`` the
multi-scale depthwise convs averaged plus identity, then the 1x1 conv plus
identity, on the patch tokens (the first ``num_extra`` tokens skip it).

The conv stage is linear in its input, so it runs as one depthwise conv
whose kernel is the zero-padded mean of the kernels plus a centred
identity, and one 1x1 conv with weight ``W + I`` (:func:`fuse_conv_stage`):
two convs instead of four, and the sums of the official structure done on
C-sized kernels instead of on every token. Its gradients are taken back to
the convs' own parameters by hand, so checkpoints keep the official layout.

What backward needs and where it comes from:

* the depthwise conv's input, the 1x1 conv's input and the activation's
  input are kept; the dropout output is recomputed from the activation's
  input and the mask (two elementwise passes), cheaper than keeping it;
* ``x`` (the filter's backward, the down projection's weight gradient): a
  Mona sits on the residual stream and the next LayerNorm keeps the Mona's
  output anyway, so this keeps that same tensor and rebuilds
  ``x = out - up(...)`` in backward (one matmul, no extra memory).
  ``keep_input=True`` keeps ``x`` instead: one C-wide tensor more, and
  gradients bit-identical to the readable forward's rather than equal to
  within the rounding of that subtraction.

On CPU the depthwise weight gradient goes through
:func:`~.depthwise.depthwise_weight_grad`. Values, gradients and dropout
masks are those of the readable forward (tests/test_fused_ops.py), also
under autocast.
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .activations import activation_pair
from .depthwise import depthwise_weight_grad
from .dropout import (
    apply_dropout,
    dropout_mask,
    dropout_multiplier,
    pack_mask,
    unpack_mask,
)
from .precision import add_residual, compute_dtype, flat
from .scaled_filter import (
    FilterInputs,
    filtered_projection_grads,
    scaled_filter,
)


@dataclass(frozen=True)
class MonaSettings:
    """What a Mona call computes besides its tensors."""
    act: nn.Module
    p: float  # dropout
    hw_shape: Tuple[int, int]
    num_extra: int  # leading non-patch tokens, which skip the convs
    eps: float  # the filter LayerNorm's
    keep_input: bool
    kernel_sizes: Tuple[int, ...]


class MonaParams(NamedTuple):
    """A Mona's parameters in the order :class:`MonaFunction` takes them
    (after ``x``); the depthwise convs' follow as (kernel, bias) pairs."""
    norm_weight: Optional[torch.Tensor]  # the four filter parameters:
    norm_bias: Optional[torch.Tensor]  # None without the scaled filter
    gamma: Optional[torch.Tensor]
    gammax: Optional[torch.Tensor]
    down_weight: torch.Tensor
    down_bias: torch.Tensor
    pw_weight: torch.Tensor  # the 1x1 aggregation conv ("projector")
    pw_bias: torch.Tensor
    up_weight: torch.Tensor
    up_bias: torch.Tensor


class Tail(NamedTuple):
    """The fused conv stage and the up projection, in compute dtype."""
    dw_weight: torch.Tensor
    dw_bias: torch.Tensor
    pw_weight: torch.Tensor
    pw_bias: torch.Tensor
    up_weight: torch.Tensor
    up_bias: torch.Tensor


def fuse_conv_stage(kernels, biases, pw_weight, pw_bias):
    """(depthwise kernel, bias, 1x1 weight, bias) of the fused conv stage,
    from the multi-scale depthwise convs' (C, 1, k, k) kernels and biases
    and the 1x1 conv's weight and bias: the kernels' zero-padded mean plus
    a centred identity, the biases' mean, the 1x1 weight plus an identity.
    Inside the autograd function only (in-place on fresh tensors)."""
    k_max = max(k.shape[-1] for k in kernels)
    padded = [
        k if k.shape[-1] == k_max else F.pad(k, [(k_max - k.shape[-1]) // 2]
                                             * 4) for k in kernels
    ]
    kernel = torch.stack(padded).mean(0)
    kernel[:, :, k_max // 2, k_max // 2] += 1
    dw_bias = torch.stack(list(biases)).mean(0)
    pw = pw_weight.clone()
    pw.view(pw.shape[:2]).diagonal().add_(1)
    return kernel, dw_bias, pw, pw_bias


def _conv_param_grads(grad_kernel, grad_bias, kernel_sizes):
    """The gradients of the depthwise convs' kernels and biases,
    interleaved (kernel, bias, kernel, bias...), from those of the fused
    kernel and bias: each conv's share of the mean, cropped to its size.
    Tensors may be shared or strided: autograd gives each parameter its
    own, in its strides."""
    n = len(kernel_sizes)
    share, bias_share = grad_kernel / n, grad_bias / n
    k_max = grad_kernel.shape[-1]
    grads = []
    for k in kernel_sizes:
        o = (k_max - k) // 2
        grads += [share[..., o:o + k, o:o + k], bias_share]
    return grads


def _patch_grid(h, hw_shape, num_extra):
    """The patch tokens of ``h`` as the depthwise conv's (B, C, H, W)
    input: channels-last (a free view) on CPU, where oneDNN's depthwise conv
    is fastest in that layout; contiguous on CUDA, where cuDNN's is."""
    B, N, C = h.shape
    H, W = hw_shape
    patches = h[:, num_extra:] if num_extra else h
    grid = patches.reshape(B, H, W, C).permute(0, 3, 1, 2)
    return grid.contiguous() if grid.is_cuda else grid


def _conv_stage(h, tail: Tail, hw_shape, num_extra):
    """(1x1 input tokens, conv stage output tokens)."""
    B, N, C = h.shape
    H, W = hw_shape
    grid = _patch_grid(h, hw_shape, num_extra)
    d = F.conv2d(grid, tail.dw_weight, tail.dw_bias,
                 padding=tail.dw_weight.shape[-1] // 2, groups=C)
    d_tokens = d.permute(0, 2, 3, 1).reshape(B, H * W, C)
    out = F.linear(d_tokens, tail.pw_weight.view(C, C), tail.pw_bias)
    if num_extra:
        out = torch.cat([h[:, :num_extra], out], dim=1)
    return d_tokens, out


def _tail_grads(grad_delta, h, keep, ctx, tail: Tail, y, d_tokens,
                stage_out) -> Tuple[torch.Tensor, Tail]:
    """Gradients of ``delta = up(dropout(act(stage(h))))``: (grad_h, the
    tail's gradients)."""
    B, N, C = h.shape
    H, W = ctx.settings.hw_shape
    n = ctx.settings.num_extra
    pw_w = tail.pw_weight.view(C, C)
    grad_up_w = flat(grad_delta).t().mm(flat(y))
    grad_up_b = flat(grad_delta).sum(0)
    grad_stage = ctx.act_grad(
        apply_dropout(grad_delta.matmul(tail.up_weight), keep), stage_out)
    grad_pw_out = grad_stage[:, n:] if n else grad_stage
    grad_pw_w = flat(grad_pw_out).t().mm(flat(d_tokens)).view_as(
        tail.pw_weight)
    grad_pw_b = flat(grad_pw_out).sum(0)
    grad_d_tokens = grad_pw_out.matmul(pw_w)
    # the sum over tokens of grad_pw_out @ pw_w, without a pass over them
    grad_dw_b = grad_pw_b.matmul(pw_w)
    grad_d = grad_d_tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)
    if grad_d.is_cuda:
        grad_d = grad_d.contiguous()
    grid = _patch_grid(h, ctx.settings.hw_shape, n)
    k = tail.dw_weight.shape[-1]
    own_weight_grad = not grad_d.is_cuda  # cuDNN's own one is fast
    grad_grid, grad_dw_w, _ = torch.ops.aten.convolution_backward(
        grad_d, grid, tail.dw_weight, None, [1, 1], [k // 2] * 2, [1, 1],
        False, [0, 0], C, [True, not own_weight_grad, False])
    if own_weight_grad:
        # The weight-gradient conv takes the output gradient as its
        # (C, B, H, W) kernel: computed in that layout by a second
        # bottleneck-square matmul, which costs less than transposing the
        # channels-last one (a strided copy).
        grad_d_cbhw = pw_w.t().mm(flat(grad_pw_out).t())
        grad_dw_w = depthwise_weight_grad(
            grid, grad_d_cbhw.view(C, B, H, W).transpose(0, 1), k, k // 2)
    grad_h = grad_grid.permute(0, 2, 3, 1).reshape(B, H * W, C)
    if n:
        grad_h = torch.cat([grad_stage[:, :n], grad_h], dim=1)
    return grad_h, Tail(grad_dw_w, grad_dw_b, grad_pw_w, grad_pw_b,
                        grad_up_w, grad_up_b)


def _input_from_output(out, y, up_w, up_b):
    """``out - linear(y, up_w, up_b)``: the Mona's input, from its output
    (the update subtracted by the matmul itself where the dtypes allow)."""
    if up_b is None or out.dtype != y.dtype:
        return out - F.linear(y, up_w, up_b)
    x = torch.addmm(flat(out), flat(y), up_w.t(), alpha=-1)
    return x.sub_(up_b).view_as(out)


class MonaFunction(torch.autograd.Function):
    """``apply(settings, mask, x, *MonaParams, *depthwise (kernel, bias)
    pairs)``; ``mask`` the bool dropout mask of the down projection output's
    shape (None: no dropout).

    The fused conv stage is built inside, so autograd records and replays
    none of the fusion's small operators: at small sizes, and on GPUs whose
    steps wait on the CPU, per-operator costs are what a Mona costs."""

    @staticmethod
    def forward(ctx, settings: MonaSettings, mask, x, *tensors):
        n_params = len(MonaParams._fields)
        params = MonaParams(*tensors[:n_params])
        dw_params = tensors[n_params:]
        ctx.settings = settings
        ctx.act, ctx.act_grad = activation_pair(settings.act)
        scaled = params.norm_weight is not None
        # the module's own ops, under the caller's autocast state
        filtered = scaled_filter(x, *params[:4], settings.eps) \
            if scaled else x
        ctx.filter_dtype = filtered.dtype
        h = F.linear(filtered, params.down_weight, params.down_bias)
        del filtered
        dtype = compute_dtype(h)
        tail = Tail(*fuse_conv_stage(dw_params[0::2], dw_params[1::2],
                                     params.pw_weight, params.pw_bias),
                    params.up_weight, params.up_bias)
        ctx.tail_dtypes = Tail(*(t.dtype for t in tail))
        tail = Tail(*(t.to(dtype) for t in tail))
        h = h.to(dtype)
        d_tokens, stage_out = _conv_stage(h, tail, settings.hw_shape,
                                          settings.num_extra)
        y = ctx.act(stage_out)
        y = apply_dropout(y, dropout_multiplier(mask, settings.p, y.dtype))
        out = add_residual(F.linear(y, tail.up_weight, tail.up_bias), x)
        ctx.save_for_backward(x if settings.keep_input else out, h,
                              d_tokens, stage_out, pack_mask(mask),
                              *params[:6], *tail)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x_or_out, h, d_tokens, stage_out, packed_mask, *rest = \
            ctx.saved_tensors
        filter_inputs = FilterInputs(None, *rest[:6])  # x comes below
        tail = Tail(*rest[6:])
        settings = ctx.settings
        keep = dropout_multiplier(unpack_mask(packed_mask, h.shape),
                                  settings.p, h.dtype)
        y = apply_dropout(ctx.act(stage_out), keep)
        x = x_or_out if settings.keep_input else _input_from_output(
            x_or_out, y, tail.up_weight, tail.up_bias)
        grad_h, tail_grads = _tail_grads(grad_out.to(h.dtype), h, keep, ctx,
                                         tail, y, d_tokens, stage_out)
        needs = ctx.needs_input_grad[2:]  # x, then the parameters
        filter_grads = filtered_projection_grads(
            grad_h, filter_inputs._replace(x=x),
            FilterInputs(*needs[:len(FilterInputs._fields)]),
            ctx.filter_dtype, settings.eps)
        grad_x = filter_grads.x
        if needs[0]:
            # grad_x is a fresh tensor of x's dtype, as grad_out is
            grad_x = grad_out if grad_x is None else grad_x.add_(grad_out)
        tail_grads = Tail(*(g.to(dt)
                            for g, dt in zip(tail_grads, ctx.tail_dtypes)))
        grads = MonaParams(*filter_grads[1:],
                           pw_weight=tail_grads.pw_weight,
                           pw_bias=tail_grads.pw_bias,
                           up_weight=tail_grads.up_weight,
                           up_bias=tail_grads.up_bias)
        return (None, None, grad_x, *grads,
                *_conv_param_grads(tail_grads.dw_weight, tail_grads.dw_bias,
                                   settings.kernel_sizes))


def mona_fused(mona, x: torch.Tensor, hw_shape) -> torch.Tensor:
    """The fused path of a :class:`~mmadapter.adapters.MonaModule`."""
    B, N, _ = x.shape
    scaled = mona.scaled_norm
    convs = mona.mona_op.depthwise_convs
    settings = MonaSettings(
        act=mona.act, p=mona.dropout.p, hw_shape=tuple(hw_shape),
        num_extra=N - hw_shape[0] * hw_shape[1],
        eps=mona.norm.eps if scaled else 0.0, keep_input=mona.keep_input,
        kernel_sizes=tuple(conv.kernel_size[0] for conv in convs))
    mask = dropout_mask((B, N, mona.down_proj.out_features), mona.dropout.p,
                        mona.dropout.training, x.device, compute_dtype(x))
    projector = mona.mona_op.projector
    params = MonaParams(
        *((mona.norm.weight, mona.norm.bias, mona.gamma, mona.gammax)
          if scaled else (None, ) * 4),
        mona.down_proj.weight, mona.down_proj.bias, projector.weight,
        projector.bias, mona.up_proj.weight, mona.up_proj.bias)
    return MonaFunction.apply(settings, mask, x, *params,
                              *(t for conv in convs
                                for t in (conv.weight, conv.bias)))
