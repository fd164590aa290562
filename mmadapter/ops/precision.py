"""Dtype and layout helpers the fused functions share: they compute in the
dtype the layers they replace would compute in under autocast."""
import torch


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a Linear/conv on ``x`` runs in here: autocast's where it is
    on for ``x``'s device, else ``x``'s."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


def flat(t: torch.Tensor) -> torch.Tensor:
    """(..., C) as (tokens, C): weight gradients are one matmul over it."""
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
