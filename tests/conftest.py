import pytest
import torch

import mmadapter  # noqa: F401  (registers models)

TINY_SWIN = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                 window_size=7, drop_path_rate=0.0)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: end-to-end test (minutes); still run in CI')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _torch_safe_globals():
    """Each test starts with torch's weights-only allow-list as the process
    had it: a run that raises inside the Runner never reaches
    CheckpointTypesHook's after_run, and would leave mmadapter's allow-list
    added for the tests after it (tests that check what a plain torch.load
    refuses then passed or failed by their order)."""
    saved = torch.serialization.get_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def tiny_swin(**kwargs):
    from mmadapter.backbones import AdapterSwinTransformer
    return AdapterSwinTransformer(**{**TINY_SWIN, **kwargs})


def stock_tiny_swin(**kwargs):
    from mmdet.models.backbones import SwinTransformer
    return SwinTransformer(**{**TINY_SWIN, **kwargs})


TINY_VIT = dict(arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                          feedforward_channels=64),
                img_size=64, patch_size=8, out_type='featmap',
                out_indices=[1, 3])

#: Each adapter method at a size that suits the tiny backbones.
TINY_ADAPTERS = {
    'Mona': dict(type='Mona', bottleneck=16),
    'Houlsby': dict(type='Houlsby', bottleneck=16),
    'AdaptFormer': dict(type='AdaptFormer', bottleneck=16),
    'LoRA': dict(type='LoRA', rank=4, targets=('q', 'v', 'proj', 'fc1')),
    'LoRand': dict(type='LoRand'),
}

#: The methods of the paper's tables at their paper settings.
PAPER_METHODS = {
    'Full': dict(adapter=None, tuning='full'),
    'Fixed': dict(adapter=None, tuning='fixed'),
    'BitFit': dict(adapter=None, tuning='bitfit'),
    'NormTuning': dict(adapter=None, tuning='norm'),
    'Partial-1': dict(adapter=None, tuning='partial-1'),
    'Mona': dict(adapter=dict(type='Mona', bottleneck=64)),
    'Houlsby': dict(adapter=dict(type='Houlsby', bottleneck=64)),
    'AdaptFormer': dict(adapter=dict(type='AdaptFormer', bottleneck=64)),
    'LoRA': dict(adapter=dict(type='LoRA', rank=64, alpha=1)),
    'LoRand': dict(adapter=dict(type='LoRand')),
}


def tiny_vit(**kwargs):
    from mmadapter.backbones import AdapterViT
    return AdapterViT(**{**TINY_VIT, **kwargs})


def stock_tiny_vit(**kwargs):
    from mmpretrain.models import VisionTransformer
    return VisionTransformer(**{**TINY_VIT, **kwargs})


def images(h=64, w=64, batch=2):
    return torch.randn(batch, 3, h, w)


def assert_outputs_equal(a, b, atol=0.0):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        torch.testing.assert_close(x, y, atol=atol, rtol=0 if not atol else
                                   1e-5)


def no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model
