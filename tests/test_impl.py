"""Which path an adapter runs (impl='auto'|'plain'|'fused'|'compiled'):
auto's table, the config options that set it, the choice at forward time by
device type, and the compiled path's equality with the plain one."""
import os.path as osp

import pytest
import torch

from conftest import tiny_swin
from mmadapter.adapters import (
    AdapterConfigError,
    LoRALinear,
    MonaModule,
    build_adapter,
)
from mmadapter.ops import AUTO, FastPaths, resolve_impl, select
from test_fused_ops import graph_node_names

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
METHODS = {
    'Mona': dict(type='Mona', bottleneck=8),
    'Houlsby': dict(type='Houlsby', bottleneck=8),
    'AdaptFormer': dict(type='AdaptFormer', bottleneck=8),
    'LoRA': dict(type='LoRA', rank=4),
    'LoRand': dict(type='LoRand', rank=2, branches=2),
}


def test_auto_rests_on_recorded_measurements_only():
    assert resolve_impl('auto', 'cpu') == 'fused'
    assert resolve_impl('auto', 'cuda') == 'plain'  # nothing measured yet
    assert resolve_impl('auto', 'mps') == 'plain'
    for impl in ('plain', 'fused', 'compiled'):
        assert resolve_impl(impl, 'cuda') == impl
    for device, (path, measurement) in AUTO.items():
        assert path in ('plain', 'fused', 'compiled')
        assert osp.isfile(osp.join(REPO, 'benchmarks', measurement)), \
            f'{device}: {measurement} is not in benchmarks/'


def adapter_modules(model):
    return [m for m in model.modules() if isinstance(m, FastPaths)
            and type(m).__name__ != 'LowRankDelta']


@pytest.mark.parametrize('method', list(METHODS))
def test_impl_option_reaches_every_adapter(method):
    model = tiny_swin(adapter=dict(METHODS[method], impl='plain'))
    modules = adapter_modules(model)
    assert modules and all(m.impl == 'plain' for m in modules)
    model = tiny_swin(adapter=METHODS[method], adapter_impl='compiled')
    assert all(m.impl == 'compiled' for m in adapter_modules(model))
    model.set_adapter_impl('fused')
    assert all(m.impl == 'fused' for m in adapter_modules(model))


def test_backbone_switch_reaches_sets_added_later():
    model = tiny_swin(adapter=METHODS['Mona'], adapter_impl='plain')
    model.add_adapter_set('lora', METHODS['LoRA'], activate=True)
    assert {m.impl for m in adapter_modules(model)} == {'plain'}
    model.activate_adapter_set('default')
    assert {m.impl for m in adapter_modules(model)} == {'plain'}


def test_bad_impl_names_the_choices():
    with pytest.raises(AdapterConfigError,
                       match="impl must be one of .*'auto', 'plain', "
                       "'fused', 'compiled'"):
        build_adapter(dict(type='Mona', impl='fast'))
    with pytest.raises(ValueError, match='adapter_impl: impl must be one'):
        tiny_swin(adapter=METHODS['Mona'], adapter_impl='triton')
    with pytest.raises(ValueError, match='impl must be one of'):
        MonaModule(16, bottleneck=8).set_impl(None)




def test_auto_path_is_chosen_by_the_input_device(monkeypatch):
    mona = MonaModule(16, bottleneck=8).train()
    x = torch.randn(1, 12, 16, requires_grad=True)
    assert 'MonaFunctionBackward' in graph_node_names(mona(x, (3, 4)))
    # a CPU table that says plain: the readable forward runs
    monkeypatch.setitem(select.AUTO, 'cpu', ('plain', 'RESULTS_cpu_512.md'))
    nodes = graph_node_names(mona(x, (3, 4)))
    assert 'MonaFunctionBackward' not in nodes
    assert 'ConvolutionBackward0' in nodes


def test_lora_with_dropout_has_no_fused_path():
    layer = LoRALinear(torch.nn.Linear(8, 24), {'q': slice(0, 8)}, 2, 1.0,
                       dropout=0.1)
    layer.set_impl('fused')
    x = torch.randn(2, 8)
    assert layer.path(x) == 'plain'
    assert 'LoRALinearFunctionBackward' not in graph_node_names(layer(x))


def test_recompute_on_every_path_gives_the_same_gradients():
    torch.manual_seed(0)
    mona = MonaModule(16, bottleneck=8, dropout=0.1).train()
    with torch.no_grad():
        for p in mona.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, 12, 16, requires_grad=True)
    results = []
    for impl, recompute in (('plain', False), ('plain', True),
                            ('fused', True)):
        mona.set_impl(impl)
        mona.recompute = recompute
        torch.manual_seed(1)
        mona.zero_grad()
        x.grad = None
        out = mona(x, (3, 4))
        out.square().sum().backward()
        results.append([out.detach(), x.grad.clone()] +
                       [p.grad.clone() for p in mona.parameters()])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.slow  # inductor compiles C++ on the CPU: about a minute
def test_compiled_path_equals_plain_without_recompiling(monkeypatch):
    """Mona with a class token on three grids: one set of graphs (dynamic
    shapes), compile time logged, values and gradients of the plain path."""
    from torch._dynamo.utils import counters

    from mmadapter.ops import compiled
    logged = []
    monkeypatch.setattr(compiled, 'print_log',
                        lambda msg, logger: logged.append((msg, logger)))
    torch._dynamo.reset()  # compile here, whatever ran before
    before = counters['stats']['unique_graphs']
    torch.manual_seed(0)
    mona = MonaModule(16, bottleneck=8, dropout=0.0).train()
    with torch.no_grad():
        for p in mona.parameters():
            p.add_(0.1 * torch.randn_like(p))
    graphs = []
    for hw in ((3, 4), (5, 6), (4, 7)):
        x = torch.randn(2, hw[0] * hw[1] + 1, 16, requires_grad=True)
        results = []
        for impl in ('plain', 'compiled'):
            mona.set_impl(impl)
            mona.zero_grad()
            x.grad = None
            out = mona(x, hw)
            (out * torch.linspace(-1, 1, out.numel()).view_as(out)) \
                .sum().backward()
            results.append([out.detach(), x.grad.clone()] +
                           [p.grad.clone() for p in mona.parameters()])
        for a, b in zip(*results):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
        graphs.append(counters['stats']['unique_graphs'])
    assert graphs[0] > before and graphs[1] == graphs[2] == graphs[0]
    assert len(logged) == 1 and logged[0][1] == 'current'
    assert 'compiled MonaModule.forward' in logged[0][0]


def run_parity(tmp_path, *args):
    import json
    import sys
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import impl_parity
    out = tmp_path / 'parity.json'
    code = impl_parity.main(['--device', 'cpu', '--out', str(out), *args])
    return code, json.loads(out.read_text())


def test_impl_parity_script_on_cpu(tmp_path):
    """benchmarks/impl_parity.py, fast settings: every adapter's fused
    path against plain, fp32 and bf16 autocast (backward outside it),
    with_cp, LoRA merged, two input sizes."""
    code, summary = run_parity(tmp_path, '--paths', 'fused')
    assert code == 0 and summary['ok'] and summary['amp_dtype'] == 'bf16'
    seen = {(c['adapter'], c['precision'], c['with_cp'])
            for c in summary['cases']}
    assert seen == {(a, p, cp) for a in METHODS for p in ('fp32', 'bf16')
                    for cp in (False, True)} | {
        ('LoRA (merged)', p, False) for p in ('fp32', 'bf16')}
    assert all(c['dropout'] for c in summary['cases'])


def test_impl_parity_script_catches_a_path_that_differs(tmp_path,
                                                        monkeypatch):
    from mmadapter.adapters import BottleneckAdapter
    from mmadapter.ops.bottleneck import bottleneck_fused

    def off_by_a_little(adapter, x, hw_shape=None):
        return bottleneck_fused(adapter, x, hw_shape) * 1.001

    monkeypatch.setattr(BottleneckAdapter, 'fused_forward', off_by_a_little)
    code, summary = run_parity(tmp_path, '--paths', 'fused', '--adapters',
                               'Houlsby', '--sizes', '64', '64')
    assert code == 1 and not summary['ok']
    bad = [c for c in summary['cases'] if not c['ok']]
    assert {c['precision'] for c in bad} == {'fp32'}  # bf16 rounds more
    assert all(c['max_relative_error'] > 1e-4 for c in bad)


@pytest.mark.slow  # inductor compiles C++ on the CPU: minutes
def test_impl_parity_script_compiled_on_cpu(tmp_path):
    code, summary = run_parity(tmp_path, '--paths', 'compiled',
                               '--adapters', 'Mona', 'LoRA')
    assert code == 0 and summary['ok']
    seen = {(c['adapter'], c['precision'], c['with_cp'])
            for c in summary['cases']}
    assert ('LoRA (merged)', 'bf16', False) in seen
    assert ('Mona', 'bf16', True) in seen


@pytest.mark.slow  # inductor compiles C++ on the CPU
def test_compiled_path_follows_adapter_set_switching():
    """Two sets on one backbone, every adapter compiled: each set computes
    what it computes on the plain path, before and after switching."""
    from conftest import images
    torch.manual_seed(0)
    model = tiny_swin(adapter=dict(METHODS['Houlsby'], dropout=0.0))
    model.add_adapter_set('lora', METHODS['LoRA'])
    with torch.no_grad():  # off their init (LoRA's B starts at zero)
        for adapter_set in model.adapter_sets.values():
            for p in adapter_set.parameters():
                p.add_(0.05 * torch.randn_like(p))
    model.eval()
    x = images(batch=1)
    for name in ('default', 'lora', 'default'):
        model.activate_adapter_set(name)
        outs = []
        for impl in ('plain', 'compiled'):
            model.set_adapter_impl(impl)
            with torch.no_grad():
                outs.append(model(x))
        for a, b in zip(*outs):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_benchmarks_build_the_path_they_are_asked_for():
    """run_benchmarks.py --impl reaches every adapter of every measured
    model (bench_models.build_backbone's impl)."""
    import sys
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    from bench_models import ARCHS, build_backbone
    for method in ('Mona', 'LoRA'):
        model = build_backbone(ARCHS['Swin tiny test arch'](), method,
                               'compiled')
        modules = adapter_modules(model)
        assert modules and {m.impl for m in modules} == {'compiled'}
    default = build_backbone(ARCHS['Swin tiny test arch'](), 'Mona')
    assert {m.impl for m in adapter_modules(default)} == {'auto'}


def test_mona_fused_option_names_its_replacement():
    with pytest.raises(AdapterConfigError,
                       match="fused=False was replaced by impl: .*"
                       "impl='plain' for fused=False"):
        build_adapter(dict(type='Mona', fused=False))


@pytest.mark.slow  # inductor compiles C++ on the CPU
def test_compiled_path_past_the_recompile_limit_runs_readable(monkeypatch):
    """mmdet's tools lower dynamo's recompile limit; past it dynamo runs a
    frame eagerly, which must take the readable branch (it came back to the
    compiled path without end: RecursionError in the full suite)."""
    import torch._dynamo
    monkeypatch.setattr(torch._dynamo.config, 'recompile_limit', 1)
    test_compiled_path_follows_adapter_set_switching()
