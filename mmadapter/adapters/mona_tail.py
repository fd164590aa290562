"""Mona after its down projection, as one autograd function that keeps only
the down projection's output and the dropout mask for backward.

``up(dropout(act(pw(dw(h)))))``, with ``dw`` and ``pw`` the fused conv stage
(:class:`~mmadapter.adapters.mona.MonaOp`) on the patch tokens (the first
``num_extra`` tokens skip it). Plain autograd keeps four bottleneck-wide
tensors per token for backward (the conv stage's two inputs, the activation's
input, the dropout output) and a float mask; this keeps ``h`` and a bool
mask, and recomputes the conv stage in backward: a depthwise conv and a
bottleneck-square matmul per token, a few percent of the module's work. On
CPU the depthwise weight gradient goes through
:func:`~.lean_ops.depthwise_weight_grad`. Values and gradients are those of
the reference structure (tests/test_lean_ops.py).
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .lean_ops import (activation_pair, apply_mask, compute_dtype,
                       depthwise_weight_grad)


def _conv_stage(h, dw_w, dw_b, pw_w, pw_b, hw_shape, num_extra):
    """(depthwise input grid, 1x1 input tokens, conv stage output tokens)."""
    B, N, C = h.shape
    H, W = hw_shape
    patches = h[:, num_extra:] if num_extra else h
    # channels-last (a free view): oneDNN's depthwise conv is fastest in
    # that layout; cuDNN's in the contiguous one (RESULTS_cuda_512.md).
    grid = patches.reshape(B, H, W, C).permute(0, 3, 1, 2)
    if grid.is_cuda:
        grid = grid.contiguous()
    d = F.conv2d(grid, dw_w, dw_b, padding=dw_w.shape[-1] // 2, groups=C)
    d_tokens = d.permute(0, 2, 3, 1).reshape(B, H * W, C)
    out = F.linear(d_tokens, pw_w.view(C, C), pw_b)
    if num_extra:
        out = torch.cat([h[:, :num_extra], out], dim=1)
    return grid, d_tokens, out


def _flat(t):
    return t.reshape(-1, t.shape[-1])


class MonaTail(torch.autograd.Function):

    @staticmethod
    def forward(ctx, h, dw_w, dw_b, pw_w, pw_b, up_w, up_b, act_module, mask,
                p, hw_shape, num_extra):
        dtype = compute_dtype(h)
        params = (dw_w, dw_b, pw_w, pw_b, up_w, up_b)
        ctx.dtypes = [t.dtype for t in params]
        ctx.in_dtype = h.dtype
        ctx.act, ctx.act_grad = activation_pair(act_module)
        ctx.p, ctx.hw_shape, ctx.num_extra = p, hw_shape, num_extra
        h, *params = (t.to(dtype) for t in (h, ) + params)
        ctx.save_for_backward(h, mask, *params)
        dw_w, dw_b, pw_w, pw_b, up_w, up_b = params
        _, _, out = _conv_stage(h, dw_w, dw_b, pw_w, pw_b, hw_shape,
                                num_extra)
        return F.linear(apply_mask(ctx.act(out), mask, p), up_w, up_b)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        h, mask, dw_w, dw_b, pw_w, pw_b, up_w, up_b = ctx.saved_tensors
        n, (H, W) = ctx.num_extra, ctx.hw_shape
        B, N, C = h.shape
        grid, d_tokens, stage_out = _conv_stage(h, dw_w, dw_b, pw_w, pw_b,
                                                ctx.hw_shape, n)
        y = apply_mask(ctx.act(stage_out), mask, ctx.p)
        grad_out = grad_out.to(h.dtype)
        grad_up_w = _flat(grad_out).t().mm(_flat(y))
        grad_up_b = _flat(grad_out).sum(0)
        grad_stage = ctx.act_grad(
            apply_mask(grad_out.matmul(up_w), mask, ctx.p), stage_out)
        grad_pw_out = grad_stage[:, n:] if n else grad_stage
        grad_pw_w = _flat(grad_pw_out).t().mm(_flat(d_tokens)).view_as(pw_w)
        grad_pw_b = _flat(grad_pw_out).sum(0)
        grad_d_tokens = grad_pw_out.matmul(pw_w.view(C, C))
        grad_dw_b = _flat(grad_d_tokens).sum(0)
        grad_d = grad_d_tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)
        if grad_d.is_cuda:
            grad_d = grad_d.contiguous()
        k = dw_w.shape[-1]
        need_w = not grad_d.is_cuda  # cuDNN's own weight gradient is fine
        grad_grid, grad_dw_w, _ = torch.ops.aten.convolution_backward(
            grad_d, grid, dw_w, None, [1, 1], [k // 2] * 2, [1, 1], False,
            [0, 0], C, [True, not need_w, False])
        if need_w:
            grad_dw_w = depthwise_weight_grad(grid, grad_d, k, k // 2)
        grad_h = grad_grid.permute(0, 2, 3, 1).reshape(B, H * W, C)
        if n:
            grad_h = torch.cat([grad_stage[:, :n], grad_h], dim=1)
        grads = (grad_dw_w, grad_dw_b, grad_pw_w, grad_pw_b, grad_up_w,
                 grad_up_b)
        return (grad_h.to(ctx.in_dtype),
                *(g.to(dt) for g, dt in zip(grads, ctx.dtypes)),
                None, None, None, None, None)
