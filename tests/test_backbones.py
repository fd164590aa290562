"""What both adapter backbones promise, tested on each of them: adapters only
add keys, zero-initialised adapters start at the base model, Mona starts near
it, and gradient checkpointing gives the same gradients."""
from typing import Callable, NamedTuple

import pytest
import torch

from conftest import (
    TINY_ADAPTERS,
    assert_outputs_equal,
    images,
    no_dropout,
    stock_tiny_swin,
    stock_tiny_vit,
    tiny_swin,
    tiny_vit,
)
from mmadapter.backbones import AdaptedSwinBlock, AdaptedViTLayer


class Backbone(NamedTuple):
    tiny: Callable  # the adapter backbone, tiny
    stock: Callable  # the stock OpenMMLab backbone it extends, same size
    block_cls: type  # what each of its blocks becomes
    num_blocks: int


BACKBONES = {
    'swin': Backbone(tiny_swin, stock_tiny_swin, AdaptedSwinBlock, 8),
    'vit': Backbone(tiny_vit, stock_tiny_vit, AdaptedViTLayer, 4),
}


@pytest.fixture(params=sorted(BACKBONES))
def backbone(request):
    return BACKBONES[request.param]


@pytest.mark.parametrize('name', sorted(TINY_ADAPTERS))
def test_adapters_only_add_keys(backbone, name):
    stock_keys = set(backbone.stock().state_dict())
    model = backbone.tiny(adapter=TINY_ADAPTERS[name])
    keys = set(model.state_dict())
    assert stock_keys <= keys
    added = keys - stock_keys
    assert added and all('adapters.' in k or '.lora.' in k for k in added)
    blocks = [block for _, block, _ in model.blocks()]
    assert len(blocks) == backbone.num_blocks
    assert all(isinstance(b, backbone.block_cls) for b in blocks)


@pytest.mark.parametrize('adapter', [
    dict(type='LoRA', rank=4, targets=('q', 'k', 'v', 'proj', 'fc1', 'fc2')),
    dict(type='AdaptFormer', bottleneck=16, init='lora'),
    dict(type='Houlsby', bottleneck=16, init='lora'),
])
@pytest.mark.parametrize('name,options', [
    ('swin', {}),
    ('vit', {}),
    ('vit', dict(layer_scale_init_value=0.1)),
])
def test_zero_initialised_adapters_start_at_the_base_model(
        adapter, name, options):
    backbone = BACKBONES[name]
    stock = backbone.stock(**options)
    stock.init_weights()
    model = backbone.tiny(adapter=adapter, **options)
    model.init_weights()  # stock random init, then the adapters' own init
    model.load_state_dict(stock.state_dict(), strict=False)
    stock.eval(), model.eval()
    x = images(64, 96)
    assert_outputs_equal(model(x), stock(x))


def test_mona_changes_the_output_but_only_slightly_at_init(backbone):
    stock = backbone.stock()
    stock.init_weights()
    model = backbone.tiny(adapter=dict(type='Mona'))
    model.init_weights()
    model.load_state_dict(stock.state_dict(), strict=False)
    stock.eval(), model.eval()
    x = images()
    for a, b in zip(model(x), stock(x)):
        assert not torch.equal(a, b)
        assert (a - b).abs().max() < 0.5 * b.abs().max()


@pytest.mark.parametrize('name', sorted(TINY_ADAPTERS) + [None])
def test_gradient_checkpointing_gives_the_same_gradients(backbone, name):
    adapter = TINY_ADAPTERS.get(name)
    plain = backbone.tiny(adapter=adapter, drop_path_rate=0.2)
    plain.init_weights()
    ckpt = backbone.tiny(adapter=adapter, drop_path_rate=0.2, with_cp=True)
    ckpt.load_state_dict(plain.state_dict(), strict=True)
    x = images(48, 80, batch=2)
    grads = []
    for model in (plain, ckpt):
        no_dropout(model).train()  # checkpointing stays active
        torch.manual_seed(3)  # the same drop-path masks for both
        loss = sum(o.square().mean() for o in model(x))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.requires_grad})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], atol=1e-6,
                                   rtol=1e-4)
