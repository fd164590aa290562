"""AdapterSwinTransformer against the stock mmdet Swin, and the behaviour of
adapters inside it."""
import copy

import pytest
import torch

from conftest import stock_tiny_swin, tiny_swin
from mmadapter.adapters import MonaModule
from mmadapter.backbones import AdaptedSwinBlock

ADAPTERS = {
    'Mona': dict(type='Mona', bottleneck=16),
    'Houlsby': dict(type='Houlsby', bottleneck=16),
    'AdaptFormer': dict(type='AdaptFormer', bottleneck=16),
    'LoRA': dict(type='LoRA', rank=4, targets=('q', 'v', 'proj', 'fc1')),
    'LoRand': dict(type='LoRand'),
}


def images(h=64, w=64, batch=2):
    return torch.randn(batch, 3, h, w)


def assert_outputs_equal(a, b, atol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, atol=atol, rtol=0 if not atol else
                                   1e-5)


def test_no_adapter_is_the_stock_swin():
    stock = stock_tiny_swin()
    stock.init_weights()
    ours = tiny_swin()
    assert list(ours.state_dict()) == list(stock.state_dict())
    ours.load_state_dict(stock.state_dict(), strict=True)
    assert all(p.requires_grad for p in ours.parameters())
    stock.eval(), ours.eval()
    x = images(70, 90)
    assert_outputs_equal(ours(x), stock(x))


@pytest.mark.parametrize('name', sorted(ADAPTERS))
def test_adapters_only_add_keys(name):
    stock_keys = set(stock_tiny_swin().state_dict())
    model = tiny_swin(adapter=ADAPTERS[name])
    keys = set(model.state_dict())
    assert stock_keys <= keys
    added = keys - stock_keys
    assert added and all('adapters.' in k or '.lora.' in k for k in added)
    assert all(isinstance(b, AdaptedSwinBlock)
               for _, b, _ in model.blocks())


@pytest.mark.parametrize('adapter', [
    dict(type='LoRA', rank=4, targets=('q', 'k', 'v', 'proj', 'fc1', 'fc2')),
    dict(type='AdaptFormer', bottleneck=16),
    dict(type='Houlsby', bottleneck=16, init='lora'),
])
def test_zero_initialised_adapters_start_at_the_base_model(adapter):
    stock = stock_tiny_swin()
    stock.init_weights()
    model = tiny_swin(adapter=adapter)
    model.init_weights()  # stock random init, then the adapters' own init
    model.load_state_dict(stock.state_dict(), strict=False)
    stock.eval(), model.eval()
    x = images(64, 96)
    assert_outputs_equal(model(x), stock(x))


def test_mona_changes_the_output_but_only_slightly_at_init():
    stock = stock_tiny_swin()
    stock.init_weights()
    model = tiny_swin(adapter=dict(type='Mona'))
    model.init_weights()
    model.load_state_dict(stock.state_dict(), strict=False)
    stock.eval(), model.eval()
    x = images()
    for a, b in zip(model(x), stock(x)):
        assert not torch.equal(a, b)
        assert (a - b).abs().max() < 0.5 * b.abs().max()


@pytest.mark.parametrize('h,w', [(64, 64), (100, 156), (36, 220)])
def test_mona_non_square_and_non_window_multiple(h, w):
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8)).eval()
    outs = model(images(h, w, batch=1))
    stride_hw = [(-(-h // s), -(-w // s)) for s in (4, 8, 16, 32)]
    assert [tuple(o.shape[2:]) for o in outs] == stride_hw


def test_mona_receives_the_unpadded_stage_grid():
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8)).eval()
    seen = []
    for _, block, _ in model.blocks():
        block.adapters['post_attn'].register_forward_hook(
            lambda m, args, out: seen.append(tuple(args[1])))
    model(images(100, 156, batch=1))
    assert seen[:2] == [(25, 39)] * 2
    assert seen[-1] == (4, 5)


def test_mona_spatial_layout_is_row_major():
    """The bottleneck tokens are laid out as (B, C, H, W) so that the convs
    see image neighbours: compare with a conv applied to the image layout."""
    torch.manual_seed(1)
    mona = MonaModule(8, bottleneck=4, dropout=0.0, scaled_norm=False).eval()
    H, W = 5, 7
    x = torch.randn(1, H * W, 8)
    y = mona(x, (H, W))
    down = mona.down_proj(x)  # (1, HW, 4)
    grid = down.transpose(1, 2).reshape(1, 4, H, W)
    expected_grid = mona.mona_op.reference_forward(grid)
    expected = x + mona.up_proj(
        mona.act(expected_grid.flatten(2).transpose(1, 2)))
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize('name', sorted(ADAPTERS))
def test_gradient_checkpointing_matches(name):
    plain = tiny_swin(adapter=ADAPTERS[name])
    plain.init_weights()
    ckpt = copy.deepcopy(plain)
    for _, block, _ in ckpt.blocks():
        block.with_cp = True
    for model in (plain, ckpt):
        for m in model.modules():  # dropout off, checkpointing still active
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        model.train()
    x = images(batch=1)
    grads = []
    for model in (plain, ckpt):
        loss = sum(o.square().mean() for o in model(x))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6,
                                   rtol=1e-4)


def test_stock_swin_with_cp_unchanged():
    model = tiny_swin(with_cp=True)
    out = model(images(batch=1))
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in model.parameters())
