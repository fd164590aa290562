"""The adapter modules on their own: structure, init, fused Mona, LoRA."""
import pytest
import torch
import torch.nn as nn

from mmadapter.adapters import LoRALinear, MonaModule, build_adapter


@pytest.mark.parametrize('kernel_sizes', [(3, 5, 7), (7, ), (3, 3, 3)])
def test_fused_mona_matches_readable_values_and_gradients(kernel_sizes):
    """The fused path folds the conv stage into one depthwise and one 1x1
    conv; the gradients still reach every conv of the official layout."""
    mona = MonaModule(16, bottleneck=8, kernel_sizes=kernel_sizes,
                      dropout=0.0)
    with torch.no_grad():
        for p in mona.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 9 * 13, 16, requires_grad=True)
    grads = []
    for impl in ('fused', 'plain'):
        mona.set_impl(impl)
        mona.zero_grad()
        x.grad = None
        out = mona(x, (9, 13))
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum() \
            .backward()
        grads.append((out.detach(), x.grad.clone(),
                      {n: p.grad.clone() for n, p in
                       mona.mona_op.named_parameters()}))
    (out_f, gx_f, gp_f), (out_r, gx_r, gp_r) = grads
    torch.testing.assert_close(out_f, out_r, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_f, gx_r, atol=1e-5, rtol=1e-5)
    assert gp_f.keys() == gp_r.keys() == {
        f'conv{i}.{p}' for i in range(1, len(kernel_sizes) + 1)
        for p in ('weight', 'bias')} | {'projector.weight', 'projector.bias'}
    for name in gp_f:
        torch.testing.assert_close(gp_f[name], gp_r[name], atol=1e-4,
                                   rtol=1e-4)


def test_mona_op_keeps_the_official_layout_and_survives_meta_init():
    with torch.device('meta'):
        mona = MonaModule(16, bottleneck=8, dropout=0.0)
    mona = mona.to_empty(device='cpu')  # tensors hold whatever memory held
    mona.reset_parameters()
    assert list(mona.mona_op.state_dict()) == [
        f'{m}.{p}' for m in ('conv1', 'conv2', 'conv3', 'projector')
        for p in ('weight', 'bias')]
    x = torch.randn(1, 30, 16)
    mona.set_impl('fused')
    fused = mona(x, (5, 6))
    mona.set_impl('plain')
    torch.testing.assert_close(fused, mona(x, (5, 6)), atol=1e-5, rtol=1e-5)


def test_mona_gradients_follow_the_parameter_layout():
    """DDP copies (and warns about) gradients whose strides differ from
    their parameter's; the fused kernels must not produce such gradients,
    nor one gradient tensor shared by two parameters (accumulating into
    one would add to the other)."""
    mona = MonaModule(32, bottleneck=16).train()
    mona.set_impl('fused')
    mona(torch.randn(1, 64, 32, requires_grad=True), (8, 8)).square() \
        .mean().backward()
    mismatched = [n for n, p in mona.named_parameters()
                  if p.grad.stride() != p.stride()]
    assert mismatched == []
    storages = [p.grad.untyped_storage().data_ptr()
                for p in mona.parameters()]
    assert len(set(storages)) == len(storages)


def test_mona_structure_and_init():
    mona = MonaModule(96)
    assert sum(p.numel() for p in mona.parameters()) == 133 * 96 + 9728
    assert torch.all(mona.gamma == 1e-6) and torch.all(mona.gammax == 1)
    assert mona.down_proj.out_features == 64
    assert [c.kernel_size for c in mona.mona_op.depthwise_convs] == \
        [(3, 3), (5, 5), (7, 7)]
    assert all(c.groups == 64 for c in mona.mona_op.depthwise_convs)
    assert mona.dropout.p == 0.1
    assert torch.all(mona.up_proj.bias == 0)
    # trunc_normal(std=0.02) with the official absolute bounds (-2, 2): not
    # zero, so Mona is near-identity only through gamma and small weights.
    assert 0.015 < mona.up_proj.weight.std() < 0.025


def test_mona_without_scaled_norm():
    mona = MonaModule(32, bottleneck=8, scaled_norm=False)
    names = {n for n, _ in mona.named_parameters()}
    assert not any(n.startswith(('norm', 'gamma')) for n in names)
    assert mona(torch.randn(1, 12, 32), (3, 4)).shape == (1, 12, 32)


def test_mona_class_token_skips_convs_only():
    torch.manual_seed(0)
    mona = MonaModule(16, bottleneck=8, dropout=0.0).eval()
    patches = torch.randn(1, 12, 16)
    cls = torch.randn(1, 1, 16)
    with_cls = mona(torch.cat([cls, patches], 1), (3, 4))
    torch.testing.assert_close(with_cls[:, 1:], mona(patches, (3, 4)))
    x = mona.norm(cls) * mona.gamma + cls * mona.gammax
    expected_cls = cls + mona.up_proj(mona.act(mona.down_proj(x)))
    torch.testing.assert_close(with_cls[:, :1], expected_cls)


def test_mona_too_few_tokens():
    with pytest.raises(ValueError, match='needs at least H \\* W = 12'):
        MonaModule(16, bottleneck=8)(torch.randn(1, 10, 16), (3, 4))


def lora_qkv(targets=('q', 'v')):
    spec = build_adapter(dict(type='LoRA', rank=4, alpha=2, targets=targets))
    base = nn.Linear(16, 48)
    slices = {t: slice(i * 16, (i + 1) * 16)
              for i, t in enumerate('qkv') if t in spec.linear_targets}
    return base, spec.wrap_linear(base, slices)


def test_lora_keeps_weight_names_and_adapts_only_its_slices():
    base, lora = lora_qkv()
    assert isinstance(lora, LoRALinear) and lora.weight is base.weight
    assert {n for n, _ in lora.named_parameters()} == {
        'weight', 'bias', 'lora.q.A', 'lora.q.B', 'lora.v.A', 'lora.v.B'}
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(lora(x), base(x))  # B = 0 at init
    with torch.no_grad():
        for delta in lora.lora.values():
            delta.B.normal_()
    diff = (lora(x) - base(x)).abs().amax(dim=(0, 1))
    assert torch.all(diff[16:32] == 0)  # k untouched
    assert torch.all(diff[:16] > 0) and torch.all(diff[32:] > 0)
    assert lora.lora['q'].scaling == 0.5


def test_lora_merge_and_unmerge():
    _, lora = lora_qkv(('q', 'k', 'v'))
    with torch.no_grad():
        for delta in lora.lora.values():
            delta.B.normal_()
    x = torch.randn(4, 16)
    expected = lora(x)
    weight = lora.weight.detach().clone()
    lora.merge()
    torch.testing.assert_close(
        torch.nn.functional.linear(x, lora.weight, lora.bias), expected,
        atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lora(x), expected, atol=1e-5, rtol=1e-5)
    lora.unmerge()
    torch.testing.assert_close(lora.weight, weight, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(lora(x), expected)


@pytest.mark.parametrize('cfg,sites,params', [
    (dict(type='Houlsby'), {'attn_branch', 'ffn_branch'}, 129 * 32 + 64),
    (dict(type='AdaptFormer'), {'ffn_parallel'}, 129 * 32 + 64),
    (dict(type='LoRand'), {'attn_branch', 'ffn_branch'}, 97.5 * 32 + 512),
    (dict(type='Mona'), {'post_attn', 'post_ffn'}, 133 * 32 + 9728),
])
def test_sites_and_sizes(cfg, sites, params):
    modules = build_adapter(cfg).site_modules(32)
    assert set(modules) == sites
    for module in modules.values():
        assert sum(p.numel() for p in module.parameters()) == params
        assert module(torch.randn(2, 6, 32), (2, 3)).shape == (2, 6, 32)


def test_adaptformer_branch_scale_and_init():
    branch = build_adapter(dict(type='AdaptFormer', dropout=0.0,
                                init='lora')).site_modules(32)['ffn_parallel']
    x = torch.randn(2, 6, 32)
    assert torch.all(branch(x) == 0)  # zero up projection: no effect at init
    with torch.no_grad():
        branch.up_proj.weight.normal_()
    raw = branch.up_proj(branch.act(branch.down_proj(x)))
    torch.testing.assert_close(branch(x), 0.1 * raw)
    learnable = build_adapter(dict(type='AdaptFormer', scale='learnable')) \
        .site_modules(32)['ffn_parallel']
    assert isinstance(learnable.scale, nn.Parameter)


def test_mona_recompute_gives_same_values_and_gradients():
    torch.manual_seed(0)
    plain = MonaModule(16, bottleneck=8, dropout=0.1).train()
    recompute = MonaModule(16, bottleneck=8, dropout=0.1, recompute=True)
    recompute.load_state_dict(plain.state_dict())
    recompute.train()
    x = torch.randn(2, 12, 16, requires_grad=True)
    results = []
    for module in (plain, recompute):
        torch.manual_seed(1)  # same dropout mask
        x.grad = None
        out = module(x, (3, 4))
        out.square().sum().backward()
        results.append((out.detach(), x.grad.clone(),
                        [p.grad.clone() for p in module.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    for a, b in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(a, b)
