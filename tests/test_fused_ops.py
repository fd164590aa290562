"""The fused paths (mmadapter/ops: the hand-written autograd functions of
Mona, the bottleneck adapters, LoRA and LoRand): the values and gradients of
the adapters' readable forwards (impl='plain'), dropout masks included, also
in float64 (gradcheck) and under CPU bf16 autocast, with less kept for
backward."""
import contextlib

import pytest
import torch
import torch.nn as nn

from mmadapter.adapters import LoRALinear, MonaModule, build_adapter
from mmadapter.adapters.lorand import LoRandAdapter
from mmadapter.ops import dropout as dropout_ops
from mmadapter.ops.bottleneck import ActDropoutLinear, Tail
from mmadapter.ops.depthwise import depthwise_weight_grad
from mmadapter.ops.dropout import (
    dropout_mask,
    dropout_multiplier,
    pack_mask,
    unpack_mask,
)
from mmadapter.ops.lora import LoRALinearFunction, LoRASlices
from mmadapter.ops.lorand import ProjectedActLinear
from mmadapter.ops.mona import MonaFunction, MonaSettings


def run(fn, x, params, seed=1, forward_context=contextlib.nullcontext):
    """Output, input gradient and parameter gradients of ``fn(x)`` under a
    fixed seed (the same dropout masks for every path). The forward runs
    in ``forward_context`` (autocast), the backward outside it, as in
    training."""
    torch.manual_seed(seed)
    x.grad = None
    for p in params:
        p.grad = None
    with forward_context():
        out = fn(x)
    (out.float() * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() \
        .backward()
    return out.detach(), x.grad.clone(), [p.grad.clone() for p in params]


def assert_same(lean, ref, tol=None, atol_of_max=0.0):
    """Equal to within ``tol``; ``atol_of_max`` adds that fraction of the
    reference's largest magnitude to atol (bf16 rounds sums relative to
    their largest terms, not to each result)."""
    tol = tol or dict(atol=1e-5, rtol=1e-5)
    (out, gx, gp), (ref_out, ref_gx, ref_gp) = lean, ref
    assert out.dtype == ref_out.dtype and gx.dtype == ref_gx.dtype
    assert len(gp) == len(ref_gp)
    for t, ref_t in [(out, ref_out), (gx, ref_gx), *zip(gp, ref_gp)]:
        assert t.dtype == ref_t.dtype
        atol = tol['atol'] + atol_of_max * ref_t.abs().max().item()
        torch.testing.assert_close(t, ref_t, atol=atol, rtol=tol['rtol'])


def perturbed(module):
    """Parameters off their init (zero up projections would hide errors)."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return module.train()


def paths(module, *args):
    """(fused, plain): ``module(x, *args)`` through either path."""

    def through(impl):
        def fn(x):
            module.set_impl(impl)
            return module(x, *args)
        return fn

    return through('fused'), through('plain')


def mona_pair(extra=0, activation='gelu', hw=(3, 4), **options):
    # plain: the official structure, three convs, nn.Dropout
    mona = perturbed(MonaModule(16, bottleneck=8, activation=activation,
                                **options))
    return (mona, *paths(mona, hw),
            torch.randn(2, hw[0] * hw[1] + extra, 16))


def bottleneck_pair(method, **options):
    module = perturbed(build_adapter(dict(type=method, bottleneck=8,
                                          **options))
                       .site_modules(16)[{'Houlsby': 'attn_branch',
                                          'AdaptFormer': 'ffn_parallel'}
                                         [method]])
    return module, *paths(module), torch.randn(2, 7, 16)


def lora_pair(tokens=7, rank=4):
    """14 tokens for 16 inputs: updates added on the slices; 40 (at least
    twice the input width): through the merged weight (the factors'
    gradients through the slices' weight gradients where the 16 inputs are
    at most 4 x rank)."""
    base = nn.Linear(16, 48)
    base.requires_grad_(False)
    lora = perturbed(LoRALinear(base, {'q': slice(0, 16),
                                       'v': slice(32, 48)}, rank, 2.0))
    return lora, *paths(lora), torch.randn(2, tokens, 16)


def lorand_pair():
    lorand = perturbed(LoRandAdapter(16, 0.5, 2, 3, 'gelu'))
    return lorand, *paths(lorand), torch.randn(2, 7, 16)


PAIRS = {
    'Mona': mona_pair,
    'Mona, class token': lambda: mona_pair(extra=1),
    'Mona, relu': lambda: mona_pair(activation='relu'),
    'Mona, keep_input': lambda: mona_pair(keep_input=True),
    'Mona, no scaled filter': lambda: mona_pair(scaled_norm=False),
    'Houlsby': lambda: bottleneck_pair('Houlsby'),
    'AdaptFormer': lambda: bottleneck_pair('AdaptFormer'),
    'AdaptFormer, learnable scale':
    lambda: bottleneck_pair('AdaptFormer', scale='learnable'),
    'LoRA': lora_pair,
    'LoRA, merged weight': lambda: lora_pair(tokens=20),
    'LoRA, merged weight, rank 2': lambda: lora_pair(tokens=20, rank=2),
    'LoRand': lorand_pair,
}


@pytest.mark.parametrize('name', list(PAIRS))
def test_fused_path_matches_readable_forward(name):
    module, lean, reference, x = PAIRS[name]()
    params = [p for p in module.parameters() if p.requires_grad]
    x.requires_grad_()
    assert_same(run(lean, x, params), run(reference, x, params))


@pytest.mark.parametrize('name', list(PAIRS))
def test_fused_path_matches_readable_forward_under_cpu_autocast(name):
    module, lean, reference, x = PAIRS[name]()
    params = [p for p in module.parameters() if p.requires_grad]
    x.requires_grad_()
    results = []
    for fn in (lean, reference):
        # forward under autocast, backward outside it (as training runs)
        results.append(run(fn, x, params, forward_context=lambda: torch
                           .autocast('cpu', dtype=torch.bfloat16)))
    assert_same(*results, tol=dict(atol=2e-2, rtol=2e-2), atol_of_max=1e-2)


@pytest.mark.parametrize('p', [0.1, 0.3, 1 / 3, 0.999])
@pytest.mark.parametrize('shape', [(1, ), (3, 7, 5), (2, 1000)])
def test_dropout_masks_and_rng_state_follow_nn_dropout(p, shape):
    """Whichever way the mask is drawn, a seed gives nn.Dropout's mask and
    leaves the generator where nn.Dropout leaves it (later draws, e.g.
    DropPath's, unchanged)."""
    torch.manual_seed(11)
    ref = nn.Dropout(p).train()(torch.ones(shape)) == 0
    state_after_ref = torch.get_rng_state()
    torch.manual_seed(11)
    dropped = dropout_mask(shape, p, True, 'cpu')
    assert torch.equal(dropped, ref)
    assert torch.equal(torch.get_rng_state(), state_after_ref)


def test_mask_draw_detects_a_bernoulli_that_draws_otherwise(monkeypatch):
    """The fast draw is used only where it gives bernoulli_'s masks: with
    a bernoulli_ that draws otherwise (MKL's, on Intel CPUs) the check
    fails and dropout_mask calls bernoulli_."""
    calls = []
    stock = torch.Tensor.bernoulli_

    def other_bernoulli_(self, p, generator=None):
        calls.append(p)
        torch.rand(3, generator=generator)  # another use of the stream
        return stock(self, p, generator=generator)

    assert dropout_ops._bernoulli_is_serial.__wrapped__() == \
        dropout_ops._bernoulli_is_serial()
    monkeypatch.setattr(torch.Tensor, 'bernoulli_', other_bernoulli_)
    assert not dropout_ops._bernoulli_is_serial.__wrapped__()
    monkeypatch.setattr(dropout_ops, '_bernoulli_is_serial', lambda: False)
    calls.clear()
    dropout_mask((4, 5), 0.1, True, 'cpu')
    assert calls == [0.9]


def test_fast_mask_draw_is_used_where_it_matches(monkeypatch):
    if not dropout_ops._bernoulli_is_serial():
        pytest.skip('this PyTorch/CPU draws bernoulli_ otherwise (MKL)')

    def no_bernoulli_(*args, **kwargs):
        raise AssertionError('bernoulli_ called')

    monkeypatch.setattr(torch.Tensor, 'bernoulli_', no_bernoulli_)
    torch.manual_seed(0)
    assert dropout_mask((4, 5), 0.1, True, 'cpu').shape == (4, 5)


def test_dropout_masks_are_those_of_nn_dropout():
    x = torch.ones(4, 300)
    torch.manual_seed(3)
    ref = nn.Dropout(0.1).train()(x)
    torch.manual_seed(3)
    dropped = dropout_mask(x.shape, 0.1, True, x.device)
    assert dropped.dtype == torch.bool
    assert torch.equal(ref == 0, dropped)
    assert 0.05 < dropped.float().mean() < 0.15
    assert dropout_mask(x.shape, 0.1, False, x.device) is None
    # what nn.Dropout multiplies by, bit for bit, also in bf16
    assert torch.equal(dropout_multiplier(dropped, 0.1, x.dtype), ref)
    torch.manual_seed(3)
    ref = nn.Dropout(0.1).train()(x.bfloat16())
    assert torch.equal(dropout_multiplier(dropped, 0.1, torch.bfloat16), ref)
    assert dropout_multiplier(None, 0.1, x.dtype) is None


@pytest.mark.parametrize('shape', [(2, 96, 8), (3, 5, 7), (1, ), (2, 9)])
def test_masks_are_kept_as_bits_and_come_back_unchanged(shape):
    mask = torch.rand(shape) < 0.3
    packed = pack_mask(mask)
    assert packed.dtype == torch.uint8
    assert packed.numel() == -(-mask.numel() // 8)
    # the first value in the lowest bit of the first byte
    assert packed[0].item() == sum(
        1 << i for i, v in enumerate(mask.reshape(-1)[:8].tolist()) if v)
    unpacked = unpack_mask(packed, mask.shape)
    assert unpacked.dtype == torch.bool and torch.equal(unpacked, mask)
    # a view starting inside a byte's worth of values is packed from itself
    assert torch.equal(unpack_mask(pack_mask(mask.reshape(-1)[1:]),
                                   torch.Size([mask.numel() - 1])),
                       mask.reshape(-1)[1:])
    assert pack_mask(None) is None and unpack_mask(None, shape) is None


def test_masks_pack_to_the_same_bits_on_big_endian_hosts(monkeypatch):
    """The byte-order-free path (taken where an int64 is big-endian) gives
    the bits of the integer-product path."""
    mask = torch.rand(3, 40, 8) < 0.3
    little = pack_mask(mask)
    monkeypatch.setattr(dropout_ops.sys, 'byteorder', 'big')
    assert torch.equal(pack_mask(mask), little)


def test_depthwise_weight_grad_matches_torch():
    for batch in (1, 3):
        x = torch.randn(batch, 6, 9, 11, dtype=torch.float64)
        grad_out = torch.randn(batch, 6, 9, 11, dtype=torch.float64)
        ref = torch.nn.grad.conv2d_weight(x, (6, 1, 5, 5), grad_out,
                                          padding=2, groups=6)
        torch.testing.assert_close(
            depthwise_weight_grad(x, grad_out, 5, 2), ref)
        # the channels-last layout Mona feeds it on CPU
        cl = torch.channels_last
        torch.testing.assert_close(
            depthwise_weight_grad(x.to(memory_format=cl),
                                  grad_out.to(memory_format=cl), 5, 2), ref)


def test_gradcheck_float64():
    torch.manual_seed(0)
    d = dict(dtype=torch.float64)
    check = dict(fast_mode=True)
    h = torch.randn(2, 5, 4, **d, requires_grad=True)
    w = torch.randn(3, 4, **d, requires_grad=True)
    b = torch.randn(3, **d, requires_grad=True)
    mask = dropout_mask(h.shape, 0.3, True, h.device)
    tail = Tail(nn.GELU(), 0.3)
    assert torch.autograd.gradcheck(
        lambda h, w, b: ActDropoutLinear.apply(tail, mask, h, w, b, None),
        (h, w, b), **check)
    residual = torch.randn(2, 5, 3, **d, requires_grad=True)
    scaled = Tail(nn.GELU(), 0.3, scale=0.1)
    assert torch.autograd.gradcheck(
        lambda h, w, b, r: ActDropoutLinear.apply(scaled, mask, h, w, b, r),
        (h, w, b, residual), **check)
    u, w_in, b_in, w_out = (torch.randn(*s, **d, requires_grad=True)
                            for s in ((2, 5, 3), (7, 3), (7, ), (3, 7)))
    assert torch.autograd.gradcheck(
        lambda *ts: ProjectedActLinear.apply(nn.GELU(), *ts),
        (u, w_in, b_in, w_out), **check)
    C, hidden, extra = 4, 3, 1
    x = torch.randn(2, extra + 6, C, **d, requires_grad=True)
    # MonaParams (filter, down, 1x1 conv, up); then two depthwise convs
    # (3x3 and 1x1: the mean of a kernel and a padded one)
    shapes = ((C, ), (C, ), (C, ), (C, ), (hidden, C), (hidden, ),
              (hidden, hidden, 1, 1), (hidden, ), (C, hidden), (C, ),
              (hidden, 1, 3, 3), (hidden, ), (hidden, 1, 1, 1), (hidden, ))
    weights = [torch.randn(*s, **d, requires_grad=True) for s in shapes]
    mask = dropout_mask((2, extra + 6, hidden), 0.3, True, x.device)
    for keep_input in (False, True):
        settings = MonaSettings(nn.GELU(), 0.3, (2, 3), extra, 1e-5,
                                keep_input, (3, 1))
        for scaled in (True, False):
            ws = weights if scaled else weights[4:]
            assert torch.autograd.gradcheck(
                lambda x, *ws: MonaFunction.apply(
                    settings, mask, x,
                    *(ws[:4] if scaled else [None] * 4), *ws[-10:]),
                (x, *ws), **check)
    # (tokens, inputs, rank): updates on the slices; merged weight, the
    # factors' gradients through the slices' weight gradients (inputs at
    # most 4 x rank); merged weight, through A x and B^T g
    for tokens, C, rank in ((3, 4, 2), (5, 4, 2), (9, 8, 1)):
        x, weight, bias = (torch.randn(*s, **d, requires_grad=True)
                           for s in ((2, tokens, C), (3 * C, C), (3 * C, )))
        factors = [torch.randn(*s, **d, requires_grad=True)
                   for s in ((rank, C), (C, rank), (rank, C), (C, rank))]
        lora = LoRASlices((slice(0, C), slice(2 * C, 3 * C)), 3.0)
        assert torch.autograd.gradcheck(
            lambda x, w, b, *f: LoRALinearFunction.apply(lora, x, w, b, *f),
            (x, weight, bias, *factors), **check)


def saved_activations(fn, x, params):
    """(bytes, dtype) of the activation-sized tensors (at least 4 values a
    token) and of the masks (bool or bits, any size) autograd keeps for
    ``fn(x)``'s backward, other than ``x`` and ``fn(x)`` (which the block
    keeps: the next layer's input) and the parameters."""
    skip = {t.data_ptr() for t in (x, *params)}
    tokens = x.shape[0] * x.shape[1]
    masks = (torch.bool, torch.uint8)
    kept = []

    def pack(t):
        if t.data_ptr() not in skip and (
                t.numel() >= 4 * tokens or t.dtype in masks):
            kept.append((t.data_ptr(), t.numel() * t.element_size(),
                         t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(x)
    return [(n, dtype) for ptr, n, dtype in kept if ptr != out.data_ptr()]


@pytest.mark.parametrize('name', ['Mona', 'Houlsby', 'LoRA'])
def test_fused_path_keeps_less_for_backward(name):
    # (192 tokens for LoRA's 16 inputs: the merged-weight path)
    # enough tokens that no weight (a fused 7x7 kernel...) looks like one
    module, lean, reference, _ = PAIRS[name]() if name != 'Mona' \
        else mona_pair(hw=(8, 12))
    x = torch.randn(2, 96, 16, requires_grad=True)
    params = list(module.parameters())
    lean_saved = saved_activations(lean, x, params)
    tokens, hidden = x.shape[0] * x.shape[1], 8
    # Mona: its down projection's output, the 1x1 conv's input and output;
    # Houlsby: its hidden layer's input; both the dropout mask as bits.
    # LoRA: nothing but its input (A x is recomputed in backward).
    bottleneck_wide = {'Mona': 3, 'Houlsby': 1, 'LoRA': 0}[name]
    expected = [(tokens * hidden * 4, torch.float32)] * bottleneck_wide
    if name != 'LoRA':
        expected.append((tokens * hidden // 8, torch.uint8))
    assert sorted(lean_saved, key=str) == sorted(expected, key=str)
    ref_saved = saved_activations(reference, x, params)
    # (LoRA's saving is in backward: no full-width gradient per slice)
    assert sum(n for n, _ in ref_saved) >= (1 if name == 'LoRA' else 2) * \
        sum(n for n, _ in lean_saved)


@pytest.mark.parametrize('keep_input', [False, True])
def test_mona_keeps_no_copy_of_the_stream(keep_input):
    """Between a Mona and the LayerNorm after it (every Mona site), the only
    C-wide tensors kept for backward are the stream the LayerNorm keeps
    anyway, and with keep_input=True also the Mona's input."""
    mona = perturbed(MonaModule(16, bottleneck=8, keep_input=keep_input))
    mona.set_impl('fused')
    norm = nn.LayerNorm(16)
    x = torch.randn(2, 96, 16, requires_grad=True)
    params = {p.data_ptr() for p in (*mona.parameters(), *norm.parameters())}
    wide = set()

    def pack(t):
        if t.data_ptr() not in params and t.numel() >= x.numel():
            wide.add((t.data_ptr(), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stream = mona(x, (8, 12))
        norm(stream)
    expected = {(stream.data_ptr(), torch.float32)}
    if keep_input:
        expected.add((x.data_ptr(), torch.float32))
    assert wide == expected


def test_lorand_keeps_nothing_as_wide_as_its_hidden_layer():
    lorand = perturbed(LoRandAdapter(32, 0.5, 2, 3, 'gelu'))  # hidden 16
    lorand.set_impl('fused')
    x = torch.randn(2, 40, 32, requires_grad=True)
    saved = saved_activations(lorand, x, list(lorand.parameters()))
    factor_width = 2 * 3
    assert saved, 'the rank-wide factors are kept'
    assert all(n <= x.shape[0] * x.shape[1] * factor_width * 4
               for n, _ in saved), saved


def graph_node_names(tensor):
    """Names of every autograd node ``tensor``'s backward runs."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize('name', list(PAIRS))
def test_no_adapter_makes_autograd_rebuild_a_view_base(name):
    """An in-place op on a view autograd tracks (F.linear's output of 3-d
    tokens is one) makes backward rebuild the whole base: CopySlices, a
    zero-filled full-width tensor and two copies per adapter (LoRand's
    residual did)."""
    module, fused, plain, x = PAIRS[name]()
    for fn in (fused, plain):
        names = graph_node_names(fn(x.requires_grad_()))
        assert 'CopySlices' not in names, sorted(names)
