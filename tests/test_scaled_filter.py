"""Mona's filter + down projection on the fused path (mmadapter/ops/
scaled_filter.py): the values and gradients of the plain expression, and
nothing of width C kept for backward but the input."""
import pytest
import torch
import torch.nn.functional as F

from mmadapter.adapters import MonaModule
from mmadapter.ops.scaled_filter import (
    FilterInputs,
    filtered_projection_grads,
    scaled_filter,
)


class FilteredProjection(torch.autograd.Function):
    """The fused pieces as one function: ``scaled_filter`` then the
    projection forward, ``filtered_projection_grads`` backward."""

    @staticmethod
    def forward(ctx, x, norm_weight, norm_bias, gamma, gammax, weight, bias,
                eps):
        filtered = scaled_filter(x, norm_weight, norm_bias, gamma, gammax,
                                 eps)
        ctx.eps, ctx.filter_dtype = eps, filtered.dtype
        ctx.save_for_backward(x, norm_weight, norm_bias, gamma, gammax,
                              weight, bias)
        return F.linear(filtered, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        grads = filtered_projection_grads(
            grad_out, FilterInputs(*ctx.saved_tensors),
            FilterInputs(*ctx.needs_input_grad[:7]), ctx.filter_dtype,
            ctx.eps)
        return (*grads, None)


def filtered_projection(*tensors):
    return FilteredProjection.apply(*tensors)


def plain(x, norm_weight, norm_bias, gamma, gammax, weight, bias, eps=1e-5):
    normed = F.layer_norm(x, (x.shape[-1], ), norm_weight, norm_bias, eps)
    return F.linear(normed * gamma + x * gammax, weight, bias)


def make_inputs(dtype=torch.float32, channels=12, out=5):
    torch.manual_seed(0)
    return [
        torch.randn(2, 7, channels, dtype=dtype),
        1 + 0.1 * torch.randn(channels, dtype=dtype),
        0.1 * torch.randn(channels, dtype=dtype),
        torch.randn(channels, dtype=dtype),
        1 + 0.1 * torch.randn(channels, dtype=dtype),
        torch.randn(out, channels, dtype=dtype),
        torch.randn(out, dtype=dtype),
    ]


def grads_of(fn, tensors, trainable, autocast=None):
    tensors = [t.detach().clone().requires_grad_(i in trainable)
               for i, t in enumerate(tensors)]
    with torch.autocast('cpu', dtype=autocast, enabled=autocast is not None):
        out = fn(*tensors, 1e-5)
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() \
        .backward()
    return out.detach(), [t.grad for t in tensors]


def test_gradcheck_float64():
    tensors = [t.requires_grad_() for t in make_inputs(torch.float64)]
    assert torch.autograd.gradcheck(
        lambda *ts: FilteredProjection.apply(*ts, 1e-5), tensors)


@pytest.mark.parametrize('trainable', [
    range(7),  # every input
    range(1, 7),  # the input x needs no gradient (frozen stem)
    (3, 5),  # some parameters only
    (0, ),  # the input only
])
def test_matches_plain_autograd(trainable):
    tensors = make_inputs()
    out, grads = grads_of(filtered_projection, tensors, set(trainable))
    ref_out, ref_grads = grads_of(plain, tensors, set(trainable))
    torch.testing.assert_close(out, ref_out)
    for i, (g, ref) in enumerate(zip(grads, ref_grads)):
        if i in trainable:
            torch.testing.assert_close(g, ref, atol=1e-5, rtol=1e-4)
        else:
            assert g is None and ref is None


def test_matches_plain_autograd_under_cpu_autocast():
    tensors = make_inputs(channels=32, out=16)
    results = []
    for fn in (filtered_projection, plain):
        # forward under autocast, backward outside it (as training runs)
        results.append(grads_of(fn, tensors, set(range(7)),
                                autocast=torch.bfloat16))
    (out, grads), (ref_out, ref_grads) = results
    assert out.dtype == ref_out.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref_out)
    for g, ref in zip(grads, ref_grads):
        assert g.dtype == ref.dtype == torch.float32
        torch.testing.assert_close(g, ref, atol=1e-2, rtol=1e-2)


def saved_tensor_shapes(module, x, hw_shape):
    """Shapes of the non-parameter tensors autograd keeps for backward."""
    params = {p.data_ptr() for p in module.parameters()}
    shapes = []

    def pack(t):
        if t.data_ptr() not in params and t.data_ptr() != x.data_ptr():
            shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x, hw_shape)
    return shapes


def test_fused_mona_keeps_no_full_width_tensor_but_its_input():
    # (without keep_input it keeps its output instead: test_fused_ops.py)
    mona = MonaModule(32, bottleneck=8, keep_input=True).train()
    mona.set_impl('fused')
    x = torch.randn(1, 12, 32, requires_grad=True)
    shapes = saved_tensor_shapes(mona, x, (3, 4))
    assert shapes, 'the bottleneck activations are kept'
    assert all(s[-1] != 32 for s in shapes), shapes
