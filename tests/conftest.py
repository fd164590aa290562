import pytest
import torch

import mmadapter  # noqa: F401  (registers models, patches checkpoint loading)

TINY_SWIN = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8),
                 window_size=7, drop_path_rate=0.0)


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'slow: end-to-end test (minutes); still run in CI')


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_swin(**kwargs):
    from mmadapter.backbones import AdapterSwinTransformer
    return AdapterSwinTransformer(**{**TINY_SWIN, **kwargs})


def stock_tiny_swin(**kwargs):
    from mmdet.models.backbones import SwinTransformer
    return SwinTransformer(**{**TINY_SWIN, **kwargs})
