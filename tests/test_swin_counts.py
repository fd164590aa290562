"""Trainable-parameter counts of every method on Swin-T/B/L equal the
analytic counts of METHODS.md."""
import pytest

from mmadapter.backbones import AdapterSwinTransformer
from swin_counts import ARCHS, expected_trainable, swin_total

METHOD_CONFIGS = {
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


def build(arch, **kwargs):
    return AdapterSwinTransformer(**ARCHS[arch], **kwargs)


@pytest.mark.parametrize('arch', sorted(ARCHS))
@pytest.mark.parametrize('method', sorted(METHOD_CONFIGS))
def test_trainable_count_matches_analytic(arch, method):
    model = build(arch, **METHOD_CONFIGS[method])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected_trainable(method, ARCHS[arch])


@pytest.mark.parametrize('arch', sorted(ARCHS))
def test_stock_total_matches_analytic(arch):
    model = build(arch)
    assert sum(p.numel() for p in model.parameters()) == swin_total(
        ARCHS[arch])


def test_paper_percentages_swin_b():
    arch = ARCHS['swin-b']
    total = swin_total(arch)
    # Partial-1 is 14.53% of Swin-B in the paper.
    assert round(100 * expected_trainable('Partial-1', arch) / total, 2) \
        == 14.53
    model = build('swin-b', adapter=dict(type='Mona'))
    adapter = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 4.0 < 100 * adapter / total < 5.0  # "5% > 100%"
