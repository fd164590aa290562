"""Pieces the adapters share to cost little above the frozen backbone.

Under plain autograd an adapter's bottleneck keeps, per token, its activation
input, a float dropout mask (CPU dropout multiplies by a float noise tensor)
and the dropout output, and recomputes nothing. Here:

* :func:`dropout_mask` draws the mask nn.Dropout would draw (the same
  values for the same seed; on most CPUs from the same random words as
  ``bernoulli_``, in half its time) as a bool tensor: a quarter of the float
  mask's bytes, and none of its float passes; the functions keep it for
  backward as bits (:func:`pack_mask`), a 32nd of the float mask's bytes;
* :class:`ActDropoutLinear` is ``linear(dropout(act(h)), weight, bias)``
  (scaled, plus a residual) keeping only ``h`` and the mask for backward;
  the dropout output, needed for the weight gradient, is recomputed there
  (two elementwise passes);
* :class:`ProjectedActLinear` is ``linear(act(linear(u, ...)), ...)``
  keeping only ``u`` where the hidden layer is much wider than ``u``;
* :func:`depthwise_weight_grad` computes a depthwise conv's weight gradient
  as a depthwise conv of the padded input with the output gradient as its
  kernel: on CPU, oneDNN's own weight-gradient kernel for depthwise convs
  takes ~20x its forward, this ~2-4x (benchmarks/PROFILE_cpu_512.md).

Under autocast the functions compute in autocast's dtype, like the layers
they replace, and return each gradient in its input's dtype.
"""
import functools
import math
import sys
from fractions import Fraction
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a Linear/conv on ``x`` runs in here: autocast's where it is
    on for ``x``'s device, else ``x``'s."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def dropout_mask(shape, p: float, training: bool, device,
                 dtype: torch.dtype = torch.float32
                 ) -> Optional[torch.Tensor]:
    """Where ``nn.Dropout(p)`` would zero a tensor of ``shape`` and
    ``dtype``: True where dropped (bool), or None when dropout is off. A
    seed gives nn.Dropout's mask, drawn as nn.Dropout draws it: on CPU its
    keep mask ``bernoulli_(1 - p)`` (or the same random words, where
    :func:`_bernoulli_is_serial`); on CUDA (and the other devices with a
    fused dropout kernel) that kernel's, run on an uninitialised tensor of
    the dtype and layout nn.Dropout would get, whose mask and generator
    offset depend on those and not on the values."""
    if not training or p == 0:
        return None
    device = torch.device(device)
    if device.type in _FUSED_DROPOUT_DEVICES and math.prod(shape):
        _, keep = torch.native_dropout(
            torch.empty(shape, dtype=dtype, device=device), p, True)
        return keep.logical_not_()
    if device.type == 'cpu' and _bernoulli_is_serial():
        return _dropped_from_words(shape, p)
    keep = torch.empty(shape, dtype=torch.bool, device=device)
    keep.bernoulli_(1 - p)
    return keep.logical_not_()


# where F.dropout runs aten::native_dropout's fused kernel (ATen's
# is_fused_kernel_acceptable), not bernoulli_ on a noise tensor
_FUSED_DROPOUT_DEVICES = ('cuda', 'xpu')


# Where PyTorch's CPU ``bernoulli_(q)`` is its generic kernel (every CPU but
# Intel's in MKL builds, which take MKL's parallel one), it draws element
# after element ``u = (random64() & (2**53 - 1)) * 2**-53`` from the mt19937
# generator and keeps where ``u < q``: ~8 ns an element, as much as a
# matmul of the adapters' bottleneck at Swin-B's stage 1. ``random_()`` on
# int64 draws the same ``random64()`` words (mod 2**63) in half that time;
# the comparison on integers is exact (``q * 2**53`` has no rounding).
# (``random_(0, 2**53)`` draws the same low 53 bits, but by a 64-bit modulo
# an element: slower than the mask.)
_MANTISSA_MASK = (1 << 53) - 1


def _dropped_from_words(shape, p: float,
                        generator=None) -> torch.Tensor:
    keep_below = math.ceil(Fraction(1 - p) * (1 << 53))
    words = torch.empty(shape, dtype=torch.int64).random_(generator=generator)
    return words.bitwise_and_(_MANTISSA_MASK) >= keep_below


@functools.lru_cache(maxsize=None)
def _bernoulli_is_serial() -> bool:
    """Whether this PyTorch's CPU ``bernoulli_`` draws as
    :func:`_dropped_from_words` does: checked once on private generators
    (masks and the generator state after them), so a kernel that draws
    otherwise keeps ``bernoulli_``."""
    for p, seed in ((0.1, 0), (0.7, 1)):
        ours, theirs = (torch.Generator().manual_seed(seed)
                        for _ in range(2))
        keep = torch.empty(1031, dtype=torch.bool).bernoulli_(
            1 - p, generator=theirs)
        dropped = _dropped_from_words((1031, ), p, generator=ours)
        if not (torch.equal(keep.logical_not_(), dropped) and torch.equal(
                ours.get_state(), theirs.get_state())):
            return False
    return True


#: Times a little-endian int64 holding 8 bools (bytes 0 or 1, the first
#: least significant), it gathers bool i at bit 56 + i (the product wraps
#: past 64 bits, which the bits gathered do not need).
_GATHER_BYTES = 0x0102040810204080


def pack_mask(mask: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A bool ``mask`` as bits, 8 values a byte (flattened, the first value
    in the lowest bit, zeros padding the last byte): what a function keeps
    of a dropout mask for backward. :func:`unpack_mask` undoes it."""
    if mask is None:
        return None
    flat = mask.reshape(-1)
    if flat.numel() % 8 or flat.storage_offset() % 8:
        flat = torch.cat([flat, flat.new_zeros(-flat.numel() % 8)])
    bytes_ = flat.view(torch.uint8)
    if sys.byteorder != 'little':
        weights = 1 << torch.arange(8, dtype=torch.uint8, device=mask.device)
        return bytes_.view(-1, 8).mul(weights).sum(-1, dtype=torch.uint8)
    words = bytes_.view(torch.int64).mul(_GATHER_BYTES)
    return words.bitwise_right_shift_(56).bitwise_and_(255).to(torch.uint8)


def unpack_mask(packed: Optional[torch.Tensor],
                shape) -> Optional[torch.Tensor]:
    """The bool mask of ``shape`` that :func:`pack_mask` packed."""
    if packed is None:
        return None
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    bits = packed.unsqueeze(-1).bitwise_right_shift(shifts).bitwise_and_(1)
    return bits.view(torch.bool).view(-1)[:shape.numel()].view(shape)


def dropout_multiplier(dropped: Optional[torch.Tensor], p: float,
                       dtype: torch.dtype) -> Optional[torch.Tensor]:
    """What nn.Dropout multiplies by with this mask: ``1 / (1 - p)``
    rounded in ``dtype`` where kept, zero where dropped (None: no dropout).
    Built once where a function applies the mask more than once: a product
    with it costs a fifth of a masked fill on CPU."""
    if dropped is None:
        return None
    return dropped.logical_not().to(dtype).mul_(_dropout_scale(p, dtype))


@functools.lru_cache(maxsize=None)
def _dropout_scale(p: float, dtype: torch.dtype) -> float:
    """``1 / (1 - p)`` rounded in ``dtype`` as nn.Dropout's CPU kernel
    rounds it (a float division in that dtype), as the Python float that
    holds it exactly: a product with it then rounds nothing, and costs no
    device tensor a call (two kernel launches on CUDA)."""
    return torch.ones((), dtype=dtype).div_(1 - p).item()


def apply_dropout(t: torch.Tensor,
                  multiplier: Optional[torch.Tensor]) -> torch.Tensor:
    """``t`` (a temporary: changed in place) as nn.Dropout leaves it, given
    :func:`dropout_multiplier`'s tensor."""
    return t if multiplier is None else t.mul_(multiplier)


# forward and backward of the activations the adapters offer (by module type)
def _gelu(module):
    return (lambda h: F.gelu(h, approximate=module.approximate),
            lambda grad, h: torch.ops.aten.gelu_backward(
                grad, h, approximate=module.approximate))


ACTIVATION_GRADS = {
    nn.GELU: _gelu,
    nn.ReLU: lambda module: (F.relu, lambda grad, h: torch.ops.aten
                             .threshold_backward(grad, F.relu(h), 0)),
    nn.SiLU: lambda module: (F.silu, torch.ops.aten.silu_backward),
}


def activation_pair(module: nn.Module):
    """(forward, backward(grad, input)) of an activation module."""
    return ACTIVATION_GRADS[type(module)](module)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1, t.shape[-1])


def add_residual(out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
    """``residual + out`` for a fresh ``out``: in place where that keeps the
    dtype ``residual + out`` has (one full-width temporary less). Inside
    autograd functions only: on a tensor autograd tracks, an in-place add
    on a view (F.linear's output of 3-d tokens is one) costs more in
    backward than the temporary it saves."""
    if torch.promote_types(out.dtype, residual.dtype) == out.dtype:
        return out.add_(residual)
    return residual + out


class ActDropoutLinear(torch.autograd.Function):
    """``residual + scale * linear(dropout(act(h)), weight, bias)`` saving
    ``h`` and the mask (as bits). ``bias`` and ``residual`` may be None; the
    mask, of ``h``'s shape, comes from :func:`dropout_mask`. As under
    autocast, the activation and dropout run in ``h``'s dtype, the linear in
    :func:`compute_dtype`'s. The scale and the residual add are done in
    place on the linear's output (a fresh tensor), which the caller could
    not do on a custom function's output."""

    @staticmethod
    def forward(ctx, h, weight, bias, act_module, mask, p, scale=1.0,
                residual=None):
        dtype = compute_dtype(h)
        act, act_grad = activation_pair(act_module)
        ctx.act_grad, ctx.act, ctx.p, ctx.scale = act_grad, act, p, scale
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype,
                      None if residual is None else residual.dtype)
        weight = weight.to(dtype)
        ctx.save_for_backward(h, weight, pack_mask(mask))
        y = act(h)
        y = apply_dropout(y, dropout_multiplier(mask, p, y.dtype)).to(dtype)
        out = F.linear(y, weight, None if bias is None else bias.to(dtype))
        if scale != 1:
            out.mul_(scale)
        return out if residual is None else add_residual(out, residual)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        h, weight, packed_mask = ctx.saved_tensors
        keep = dropout_multiplier(unpack_mask(packed_mask, h.shape),
                                  ctx.p, h.dtype)
        given = len(ctx.needs_input_grad)  # scale, residual are optional
        needs = ctx.needs_input_grad + (False, ) * (8 - given)
        grad_residual = grad_out.to(ctx.dtypes[2]) if needs[7] else None
        grad_out = grad_out.to(weight.dtype)
        if ctx.scale != 1:
            grad_out = grad_out * ctx.scale
        grad_h = grad_weight = grad_bias = None
        if needs[1]:
            y = apply_dropout(ctx.act(h), keep).to(grad_out.dtype)
            grad_weight = _flat(grad_out).t().mm(_flat(y)).to(ctx.dtypes[0])
        if needs[2]:
            grad_bias = _flat(grad_out).sum(0).to(ctx.dtypes[1])
        if needs[0]:
            grad_y = grad_out.matmul(weight).to(h.dtype)
            grad_h = ctx.act_grad(apply_dropout(grad_y, keep), h)
        return (grad_h, grad_weight, grad_bias, None, None, None, None,
                grad_residual)[:given]


class ProjectedActLinear(torch.autograd.Function):
    """``linear(act(linear(u, w_in, b_in)), w_out)`` saving ``u`` (not the
    hidden layer) for backward, which recomputes the hidden layer there: for
    a hidden layer much wider than ``u`` (LoRand's C/2-wide hidden layer
    between rank-32 factors). Dtypes as :class:`ActDropoutLinear`'s."""

    @staticmethod
    def forward(ctx, u, w_in, b_in, w_out, act_module):
        dtype = compute_dtype(u)
        act, act_grad = activation_pair(act_module)
        ctx.act_grad, ctx.act = act_grad, act
        ctx.dtypes = (u.dtype, w_in.dtype,
                      None if b_in is None else b_in.dtype, w_out.dtype)
        u, w_in, w_out = u.to(dtype), w_in.to(dtype), w_out.to(dtype)
        b_in = None if b_in is None else b_in.to(dtype)
        ctx.save_for_backward(u, w_in, b_in, w_out)
        return F.linear(act(F.linear(u, w_in, b_in)), w_out)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, w_in, b_in, w_out = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_out = grad_out.to(u.dtype)
        h = F.linear(u, w_in, b_in)
        grads = [None] * 5
        if needs[3]:
            grads[3] = _flat(grad_out).t().mm(_flat(ctx.act(h)))
        grad_h = ctx.act_grad(grad_out.matmul(w_out), h)
        del h
        if needs[0]:
            grads[0] = grad_h.matmul(w_in)
        if needs[1]:
            grads[1] = _flat(grad_h).t().mm(_flat(u))
        if needs[2]:
            grads[2] = _flat(grad_h).sum(0)
        return tuple(None if g is None else g.to(dt)
                     for g, dt in zip(grads, (*ctx.dtypes, None)))


def act_dropout_linear(h: torch.Tensor, act: nn.Module,
                       dropout: Optional[nn.Dropout], weight: torch.Tensor,
                       bias: Optional[torch.Tensor], scale: float = 1.0,
                       residual: Optional[torch.Tensor] = None
                       ) -> torch.Tensor:
    """``residual + scale * F.linear(dropout(act(h)), weight, bias)`` (no
    dropout for None, no residual for None): with gradients, through
    :class:`ActDropoutLinear` (same values and gradients, less kept for
    backward, fewer temporaries)."""
    if type(act) not in ACTIVATION_GRADS or not torch.is_grad_enabled():
        y = act(h) if dropout is None else dropout(act(h))
        out = F.linear(y, weight, bias)
        if scale != 1:
            out = out * scale
        return out if residual is None else residual + out
    p = 0.0 if dropout is None else dropout.p
    mask = None if dropout is None else dropout_mask(
        h.shape, p, dropout.training, h.device, h.dtype)
    return ActDropoutLinear.apply(h, weight, bias, act, mask, p, scale,
                                  residual)


def depthwise_weight_grad(x: torch.Tensor, grad_out: torch.Tensor,
                          kernel_size: int, padding: int) -> torch.Tensor:
    """Weight gradient (C, 1, k, k) of ``conv2d(x, w, padding=padding,
    groups=C)`` (stride 1, square kernel) given its output gradient.

    ``grad_w[c, i, j] = sum_{b,h,w} pad(x)[b, c, h + i, w + j] *
    grad_out[b, c, h, w]``: per sample, the depthwise conv of the padded
    input with the output gradient as each group's kernel, summed over the
    batch. One conv per sample: folding the batch into the groups' input
    channels took ~10x as long at batch 2 (oneDNN, 64 channels of 32x32 to
    128x128). The input is padded here, not by the conv: oneDNN's padded
    conv with a kernel this large raised Swin-B's peak memory by 42 MiB.
    """
    B, C, H, W = grad_out.shape
    padded = F.pad(x, [padding] * 4)
    grad = None
    for b in range(B):
        kernel = grad_out[b:b + 1].transpose(0, 1)  # (C, 1, H, W)
        one = F.conv2d(padded[b:b + 1], kernel, groups=C)
        grad = one if grad is None else grad.add_(one)
    return grad.reshape(C, 1, kernel_size, kernel_size)
