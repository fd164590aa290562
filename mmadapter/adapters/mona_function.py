"""A whole Mona module as one autograd function that keeps, per token, its
output, three bottleneck-wide tensors and its dropout mask (as bits) for
backward.

``out = x + up(dropout(act(pw(dw(down(filter(x)))))))``, with ``filter`` the
scaled LayerNorm (:mod:`.scaled_filter`, or none), ``dw`` and ``pw`` the fused
conv stage (:class:`~mmadapter.adapters.mona.MonaOp`) on the patch tokens
(the first ``num_extra`` tokens skip it).

What backward needs and where it comes from:

* the conv stage's inputs, the activation's input and the dropout output
  (four bottleneck-wide tensors under plain autograd, and a float mask):
  the depthwise conv's input ``h = down(filter(x))``, the 1x1 conv's input
  and the activation's input are kept, the dropout output is recomputed
  from the activation's input and the mask (two elementwise passes). Also
  recomputing the conv stage from ``h`` (a depthwise conv and a
  bottleneck-square matmul a token) kept two of these tensors fewer, 0.025
  of Full's peak memory on Swin-B at 512, for ~0.01-0.015 of Full's step
  time on a 2-core CPU by the operators' profile
  (benchmarks/PROFILE_FINDINGS.md, ninth round): time is the margin Mona
  misses, memory the one with room;
* ``x`` (for the filter's backward and the down projection's weight
  gradient): a Mona sits on the residual stream, and the next LayerNorm keeps
  the Mona's output for its own backward anyway, so this keeps that same
  tensor (no extra memory) and rebuilds ``x = out - up(...)`` in backward,
  one up-projection matmul. With ``keep_input=True`` it keeps ``x`` instead:
  one C-wide tensor per Mona more, and gradients bit-identical to the
  reference structure's rather than equal to within the rounding of that
  subtraction (half a unit in the last place of ``out``).

The forward computes exactly what the module computes without this function.
On CPU the depthwise weight gradient goes through
:func:`~.lean_ops.depthwise_weight_grad`. Values and gradients are those of
the reference structure (tests/test_lean_ops.py), also under autocast.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .lean_ops import (activation_pair, add_residual, apply_dropout,
                       compute_dtype, depthwise_weight_grad,
                       dropout_multiplier, pack_mask, unpack_mask)
from .scaled_filter import filtered_projection_grads, scaled_filter


def fuse_conv_stage(kernels, biases, dw_identity, pw_weight, pw_bias,
                    pw_identity):
    """(depthwise kernel, bias, 1x1 weight, bias) of the fused conv stage,
    from the multi-scale depthwise convs' (C, 1, k, k) kernels and biases
    and the 1x1 conv's weight and bias: the kernels' zero-padded mean plus
    a centred identity, the biases' mean, the 1x1 weight plus an identity.
    """
    k_max = dw_identity.shape[-1]
    # The kernels as (C, k, k): under autograd their gradients then come
    # back with the parameters' strides, as DDP's gradient buckets expect.
    kernels = [k.flatten(0, 1) for k in kernels]
    kernels = [
        k if k.shape[-1] == k_max else F.pad(k, [(k_max - k.shape[-1]) // 2]
                                             * 4) for k in kernels
    ]
    # Few, whole-tensor ops: on GPUs at small batch sizes every op here
    # is a kernel launch per Mona per step.
    kernel = torch.stack(kernels).mean(0).unsqueeze(1) + dw_identity
    dw_bias = torch.stack(list(biases)).mean(0)
    return kernel, dw_bias, pw_weight + pw_identity, pw_bias


def _conv_param_grads(grad_kernel, grad_bias, kernel_sizes):
    """The gradients of :func:`fuse_conv_stage`'s depthwise kernels and
    biases, interleaved (kernel, bias, kernel, bias...), from those of the
    fused kernel and bias (what autograd would compute through it: the
    mean's share, cropped to each kernel). Tensors may be shared or
    strided: autograd gives each parameter its own, in its strides."""
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
    is fastest in that layout; contiguous on CUDA, where cuDNN's is
    (RESULTS_cuda_512.md)."""
    B, N, C = h.shape
    H, W = hw_shape
    patches = h[:, num_extra:] if num_extra else h
    grid = patches.reshape(B, H, W, C).permute(0, 3, 1, 2)
    return grid.contiguous() if grid.is_cuda else grid


def _conv_stage(h, dw_w, dw_b, pw_w, pw_b, hw_shape, num_extra):
    """(1x1 input tokens, conv stage output tokens)."""
    B, N, C = h.shape
    H, W = hw_shape
    grid = _patch_grid(h, hw_shape, num_extra)
    d = F.conv2d(grid, dw_w, dw_b, padding=dw_w.shape[-1] // 2, groups=C)
    d_tokens = d.permute(0, 2, 3, 1).reshape(B, H * W, C)
    out = F.linear(d_tokens, pw_w.view(C, C), pw_b)
    if num_extra:
        out = torch.cat([h[:, :num_extra], out], dim=1)
    return d_tokens, out


def _flat(t):
    return t.reshape(-1, t.shape[-1])


def _tail_grads(grad_delta, h, keep, act, act_grad, tail_params, y,
                grid, d_tokens, stage_out, hw_shape, n):
    """Gradients of ``delta = up(mask(act(stage(h))))``: (grad_h, grads of
    dw_w, dw_b, pw_w, pw_b, up_w, up_b)."""
    dw_w, dw_b, pw_w, pw_b, up_w, up_b = tail_params
    B, N, C = h.shape
    H, W = hw_shape
    grad_up_w = _flat(grad_delta).t().mm(_flat(y))
    grad_up_b = _flat(grad_delta).sum(0)
    grad_stage = act_grad(apply_dropout(grad_delta.matmul(up_w), keep),
                          stage_out)
    grad_pw_out = grad_stage[:, n:] if n else grad_stage
    grad_pw_w = _flat(grad_pw_out).t().mm(_flat(d_tokens)).view_as(pw_w)
    grad_pw_b = _flat(grad_pw_out).sum(0)
    grad_d_tokens = grad_pw_out.matmul(pw_w.view(C, C))
    # the sum over tokens of grad_pw_out @ pw_w, without a pass over them
    grad_dw_b = grad_pw_b.matmul(pw_w.view(C, C))
    grad_d = grad_d_tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)
    if grad_d.is_cuda:
        grad_d = grad_d.contiguous()
    k = dw_w.shape[-1]
    need_w = not grad_d.is_cuda  # cuDNN's own weight gradient is fine
    grad_grid, grad_dw_w, _ = torch.ops.aten.convolution_backward(
        grad_d, grid, dw_w, None, [1, 1], [k // 2] * 2, [1, 1], False,
        [0, 0], C, [True, not need_w, False])
    if need_w:
        # The weight-gradient conv takes the output gradient as its
        # (C, B, H, W) kernel: computed in that layout by a second
        # bottleneck-square matmul, which costs less than transposing the
        # channels-last one (a strided copy).
        grad_d_cbhw = pw_w.view(C, C).t().mm(_flat(grad_pw_out).t())
        grad_dw_w = depthwise_weight_grad(
            grid, grad_d_cbhw.view(C, B, H, W).transpose(0, 1), k, k // 2)
    grad_h = grad_grid.permute(0, 2, 3, 1).reshape(B, H * W, C)
    if n:
        grad_h = torch.cat([grad_stage[:, :n], grad_h], dim=1)
    return grad_h, (grad_dw_w, grad_dw_b, grad_pw_w, grad_pw_b, grad_up_w,
                    grad_up_b)


def _input_from_output(out, y, up_w, up_b):
    """``out - linear(y, up_w, up_b)``: the Mona's input, from its output
    (the update subtracted by the matmul itself where the dtypes allow)."""
    if up_b is None or out.dtype != y.dtype:
        return out - F.linear(y, up_w, up_b)
    x = torch.addmm(_flat(out), _flat(y), up_w.t(), alpha=-1)
    return x.sub_(up_b).view_as(out)


class MonaFunction(torch.autograd.Function):
    """Inputs: ``x``, the filter's (norm weight, norm bias, gamma, gammax:
    all None without the scaled filter), down weight and bias, the 1x1
    conv's weight and bias, up weight and bias, then the activation module,
    the bool dropout mask of the down projection output's shape (or None),
    p, hw_shape, num_extra, the LayerNorm's eps, keep_input, the fused
    stage's (depthwise, 1x1) identities, and last the depthwise convs'
    parameters (kernel, bias, kernel, bias...).

    The fused conv stage (:func:`fuse_conv_stage`) is built inside, its
    gradients taken back to the convs' parameters by hand: autograd records
    and replays none of the fusion's ~10 operators a Mona. At small sizes,
    and on GPUs whose steps wait on the CPU, per-operator costs are what a
    Mona costs (benchmarks/PROFILE_FINDINGS.md, tenth round)."""

    @staticmethod
    def forward(ctx, x, norm_w, norm_b, gamma, gammax, down_w, down_b, pw_w,
                pw_b, up_w, up_b, act_module, mask, p, hw_shape, num_extra,
                eps, keep_input, identities, *dw_params):
        ctx.kernel_sizes = [w.shape[-1] for w in dw_params[0::2]]
        dw_w, dw_b, pw_w, pw_b = fuse_conv_stage(
            dw_params[0::2], dw_params[1::2], identities[0], pw_w, pw_b,
            identities[1])
        filter_params = (norm_w, norm_b, gamma, gammax)
        scaled = norm_w is not None
        # the module's own ops, under the caller's autocast state
        filtered = scaled_filter(x, *filter_params, eps) if scaled else x
        ctx.filter_dtype = filtered.dtype
        h = F.linear(filtered, down_w, down_b)
        del filtered
        dtype = compute_dtype(h)
        tail = (dw_w, dw_b, pw_w, pw_b, up_w, up_b)
        ctx.tail_dtypes = [t.dtype for t in tail]
        tail = [t.to(dtype) for t in tail]
        h = h.to(dtype)
        act, ctx.act_grad = activation_pair(act_module)
        ctx.act, ctx.p, ctx.hw_shape, ctx.num_extra = act, p, hw_shape, \
            num_extra
        ctx.eps, ctx.scaled, ctx.keep_input = eps, scaled, keep_input
        ctx.down_b_dtype = None if down_b is None else down_b.dtype
        d_tokens, stage_out = _conv_stage(h, *tail[:4], hw_shape, num_extra)
        y = act(stage_out)
        y = apply_dropout(y, dropout_multiplier(mask, p, y.dtype))
        out = add_residual(F.linear(y, *tail[4:]), x)
        ctx.save_for_backward(x if keep_input else out, h, d_tokens,
                              stage_out, pack_mask(mask), *(
                                  filter_params if scaled else ()), down_w,
                              *tail)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        saved = list(ctx.saved_tensors)
        x_or_out, h, d_tokens, stage_out, packed_mask = saved[:5]
        keep = dropout_multiplier(unpack_mask(packed_mask, h.shape),
                                  ctx.p, h.dtype)
        filter_params = saved[5:9] if ctx.scaled else [None] * 4
        down_w, *tail = saved[9 if ctx.scaled else 5:]
        n = ctx.num_extra
        grid = _patch_grid(h, ctx.hw_shape, n)
        y = apply_dropout(ctx.act(stage_out), keep)
        x = x_or_out if ctx.keep_input else _input_from_output(
            x_or_out, y, *tail[4:])
        grad_h, tail_grads = _tail_grads(
            grad_out.to(h.dtype), h, keep, ctx.act, ctx.act_grad,
            tail, y, grid, d_tokens, stage_out, ctx.hw_shape, n)
        needs = ctx.needs_input_grad
        grad_x, *filter_grads, grad_down_w, grad_down_b = \
            filtered_projection_grads(
                grad_h, x, *filter_params, down_w, needs[:7],
                ctx.filter_dtype, ctx.eps, ctx.down_b_dtype)
        if needs[0]:
            # grad_x is a fresh tensor of x's dtype, as grad_out is
            grad_x = grad_out if grad_x is None else grad_x.add_(grad_out)
        grad_dw_w, grad_dw_b, *pw_up_grads = [
            g.to(dt) for g, dt in zip(tail_grads, ctx.tail_dtypes)]
        return (grad_x, *filter_grads, grad_down_w, grad_down_b,
                *pw_up_grads, *([None] * 8),
                *_conv_param_grads(grad_dw_w, grad_dw_b, ctx.kernel_sizes))
