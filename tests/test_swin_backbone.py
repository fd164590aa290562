"""AdapterSwinTransformer against the stock mmdet Swin, and Mona's patch
grid inside it (what both backbones share: tests/test_backbones.py)."""
import pytest
import torch

from conftest import assert_outputs_equal, images, stock_tiny_swin, tiny_swin
from mmadapter.adapters import MonaModule


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
    expected_grid = mona.mona_op(grid)
    expected = x + mona.up_proj(
        mona.act(expected_grid.flatten(2).transpose(1, 2)))
    torch.testing.assert_close(y, expected)


def test_stock_swin_with_cp_unchanged():
    model = tiny_swin(with_cp=True)
    out = model(images(batch=1))
    sum(o.sum() for o in out).backward()
    assert all(p.grad is not None for p in model.parameters())
