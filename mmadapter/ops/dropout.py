"""Dropout masks for the fused functions: the mask nn.Dropout would draw,
under the same seed, as a bool tensor, and kept for backward as bits.

nn.Dropout on CPU multiplies by a float noise tensor and autograd keeps it:
four bytes a value. :func:`dropout_mask` draws the same mask (from the same
random words as ``bernoulli_`` where the CPU kernel draws serially, faster)
as bools; :func:`pack_mask` keeps it as bits, a 32nd of the float
mask's bytes; :func:`dropout_multiplier` rebuilds what nn.Dropout multiplies
by, bit for bit.
"""
import functools
import math
import sys
from fractions import Fraction
from typing import Optional

import torch


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
# generator and keeps where ``u < q``, one element at a time: as costly as
# a bottleneck matmul at Swin-B's stage 1. ``random_()`` on int64 draws the
# same ``random64()`` words (mod 2**63) faster (MASK_DRAW_cpu_512.md); the
# comparison on integers is exact (``q * 2**53`` has no rounding).
# (``random_(0, 2**53)`` draws the same low 53 bits, but by a 64-bit modulo
# an element: slower, KERNEL_CHOICES_cpu.md.)
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
    Built once where a function applies the mask more than once."""
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


