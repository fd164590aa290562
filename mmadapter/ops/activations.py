"""Forward and backward of the activations the adapters offer, by module
type: the fused functions keep an activation's input and call its ATen
backward kernel themselves instead of letting autograd record the op."""
import torch
import torch.nn as nn
import torch.nn.functional as F


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
    """(forward, backward(grad, input)) of an activation module; a
    ValueError for one the fused functions do not know."""
    if type(module) not in ACTIVATION_GRADS:
        raise ValueError(
            f'The fused adapter functions know the activations '
            f'{[c.__name__ for c in ACTIVATION_GRADS]}, not '
            f'{type(module).__name__}; use impl=\'plain\' for it.')
    return ACTIVATION_GRADS[type(module)](module)
