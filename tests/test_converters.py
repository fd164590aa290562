"""tools/model_converters on checkpoints generated here in each source
format: Microsoft Swin, the official Mona code, full and adapter-only
mmadapter checkpoints, LoRA models."""
import os.path as osp
import runpy
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import ConfigDict

from conftest import TINY_SWIN
from mmadapter.adapters import MonaModule
from mmadapter.backbones.swin import rename_official_mona_key
from mmadapter.checkpoint import (
    ADAPTER_META_KEY,
    AdapterCheckpointError,
    save_adapter_checkpoint,
)
from mmadapter.safe_load import load_file
from test_pretrained import to_official_swin, trained_stock
from tiny_detectors import (
    LORA,
    assert_same_outputs,
    build,
    config,
    retinanet_cfg,
    trained,
    write_base,
    write_config,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run_tool(monkeypatch, name, *args):
    path = osp.join(REPO, 'tools', 'model_converters', f'{name}.py')
    monkeypatch.setattr(sys, 'argv', [path] + [str(a) for a in args])
    runpy.run_path(path, run_name='__main__')


def load(path):
    return load_file(path)


@pytest.fixture
def base(tmp_path):
    return write_base(tmp_path / 'base.pth')


# -- Microsoft Swin --------------------------------------------------------
def test_swin2mmadapter_imagenet_file(tmp_path, monkeypatch, capsys):
    stock = trained_stock()
    official = to_official_swin(stock.state_dict())
    official['layers.0.blocks.1.attn_mask'] = torch.zeros(4, 49, 49)
    torch.save({'model': official, 'epoch': 300}, tmp_path / 'ms.pth')
    run_tool(monkeypatch, 'swin2mmadapter', tmp_path / 'ms.pth',
             tmp_path / 'out.pth')
    printed = capsys.readouterr().out
    assert 'layers.*.blocks.*.attn.qkv.weight -> ' \
        'backbone.stages.*.blocks.*.attn.w_msa.qkv.weight' in printed
    assert 'head.weight (ImageNet classifier)' in printed
    assert 'attn_mask (buffer rebuilt at run time)' in printed
    converted = load(tmp_path / 'out.pth')['state_dict']
    expected = {f'backbone.{k}': v for k, v in stock.state_dict().items()
                if not k.startswith('norm')
                and not k.endswith('relative_position_index')}
    assert converted.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(converted[key], value), key


def test_swin2mmadapter_detection_fork_file_loads_into_stock_swin(
        tmp_path, monkeypatch):
    from mmdet.models.backbones import SwinTransformer
    stock = trained_stock()
    official = to_official_swin(stock.state_dict())
    del official['norm.weight'], official['head.weight']
    for key, value in stock.state_dict().items():
        if key.startswith('norm') or key.endswith('relative_position_index'):
            official[key.replace('stages.', 'layers.').replace(
                'attn.w_msa.', 'attn.')] = value
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in official.items()}},
               tmp_path / 'det.pth')
    run_tool(monkeypatch, 'swin2mmadapter', tmp_path / 'det.pth',
             tmp_path / 'out.pth')
    stock_again = SwinTransformer(**TINY_SWIN, init_cfg=ConfigDict(
        type='Pretrained', checkpoint=str(tmp_path / 'out.pth')))
    stock_again.init_weights()
    for key, value in stock.state_dict().items():
        assert torch.equal(stock_again.state_dict()[key], value), key


# -- the official Mona code ---------------------------------------------------
class OfficialMonaOp(nn.Module):
    def __init__(self, channels):
        super().__init__()
        for i, k in enumerate((3, 5, 7), start=1):
            setattr(self, f'conv{i}', nn.Conv2d(channels, channels, k,
                                                padding=k // 2,
                                                groups=channels))
        self.projector = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        x = (self.conv1(x) + self.conv2(x) + self.conv3(x)) / 3.0 + x
        return x + self.projector(x)


class OfficialMona(nn.Module):
    """The official Mona module's parameter names and computation (as
    described in the paper's code: reshape (B, H, W, C) then permute)."""

    def __init__(self, dims, bottleneck):
        super().__init__()
        self.project1 = nn.Linear(dims, bottleneck)
        self.project2 = nn.Linear(bottleneck, dims)
        self.adapter_conv = OfficialMonaOp(bottleneck)
        self.norm = nn.LayerNorm(dims)
        self.gamma = nn.Parameter(torch.randn(dims))
        self.gammax = nn.Parameter(torch.randn(dims))

    def forward(self, x, hw_shape):
        identity = x
        x = self.norm(x) * self.gamma + x * self.gammax
        y = self.project1(x)
        b, n, c = y.shape
        y = y.reshape(b, *hw_shape, c).permute(0, 3, 1, 2)
        y = self.adapter_conv(y).permute(0, 2, 3, 1).reshape(b, n, c)
        return identity + self.project2(F.gelu(y))


@pytest.mark.parametrize('impl', ['fused', 'plain'])
def test_official_mona_module_gives_identical_outputs(impl):
    official = OfficialMona(32, 8).eval()
    with torch.no_grad():
        official.norm.weight.normal_()
    ours = MonaModule(32, bottleneck=8).eval()
    ours.set_impl(impl)
    prefix = 'layers.1.blocks.0.my_module_2.'
    state = {rename_official_mona_key(prefix + k): v
             for k, v in official.state_dict().items()}
    ours_prefix = 'layers.1.blocks.0.adapters.post_ffn.'
    assert all(k.startswith(ours_prefix) for k in state)
    ours.load_state_dict({k[len(ours_prefix):]: v for k, v in state.items()},
                         strict=True)
    x = torch.randn(2, 6 * 5, 32)
    torch.testing.assert_close(ours(x, (6, 5)), official(x, (6, 5)),
                               rtol=1e-5, atol=1e-5)


def to_official_mona(detector):
    """A Mona detector's checkpoint as the official Mona code writes it:
    Microsoft Swin naming, my_module_1/2, mmdet 2.x meta and optimizer."""
    backbone = {k[len('backbone.'):]: v
                for k, v in detector.state_dict().items()
                if k.startswith('backbone.')}
    official = to_official_swin(backbone)
    del official['norm.weight'], official['head.weight']
    for key, value in backbone.items():
        if key.startswith('norm') or key.endswith('relative_position_index'):
            official[key.replace('stages.', 'layers.').replace(
                'attn.w_msa.', 'attn.')] = value
    renames = (('adapters.post_attn.', 'my_module_1.'),
               ('adapters.post_ffn.', 'my_module_2.'),
               ('down_proj.', 'project1.'), ('up_proj.', 'project2.'),
               ('mona_op.', 'adapter_conv.'))
    state = {}
    for key, value in official.items():
        for old, new in renames:
            key = key.replace(old, new)
        state[f'backbone.{key}'] = value
    state.update((k, v) for k, v in detector.state_dict().items()
                 if not k.startswith('backbone.'))
    return dict(meta=dict(mmdet_version='2.11.0', CLASSES=('a', 'b', 'c'),
                          config='model = dict(...)  # mmdet 2.x'),
                state_dict=state, optimizer=dict(state={}, param_groups=[]))


def test_mona2mmadapter_gives_the_same_detector(tmp_path, monkeypatch,
                                                capsys, base):
    cfg = retinanet_cfg(base)
    model = trained(cfg)
    official = to_official_mona(model)
    assert any('.my_module_1.project1.' in k for k in official['state_dict'])
    torch.save(official, tmp_path / 'official.pth')
    run_tool(monkeypatch, 'mona2mmadapter', tmp_path / 'official.pth',
             tmp_path / 'out.pth', '--config',
             write_config(tmp_path / 'cfg.py', cfg))
    printed = capsys.readouterr().out
    assert ('backbone.layers.*.blocks.*.my_module_1.project1.weight -> '
            'backbone.stages.*.blocks.*.adapters.post_attn.down_proj.weight'
            in printed)
    assert 'bbox_head.retina_cls.weight' in printed  # kept, listed
    assert 'every key matches the model' in printed
    converted = load(tmp_path / 'out.pth')
    assert 'optimizer' not in converted
    assert converted['meta']['dataset_meta'] == dict(classes=('a', 'b', 'c'))
    fresh = build(cfg)
    fresh.load_state_dict(converted['state_dict'], strict=True)
    assert_same_outputs(model, fresh)


def test_mona2mmadapter_reports_keys_the_model_lacks(tmp_path, monkeypatch,
                                                     capsys, base):
    cfg = retinanet_cfg(base)
    official = to_official_mona(trained(cfg))
    official['state_dict']['bbox_head.old_name.weight'] = torch.zeros(3)
    torch.save(official, tmp_path / 'official.pth')
    with pytest.raises(SystemExit, match='do not fit'):
        run_tool(monkeypatch, 'mona2mmadapter', tmp_path / 'official.pth',
                 tmp_path / 'out.pth', '--config',
                 write_config(tmp_path / 'cfg.py', cfg))
    assert 'not in the model (1)' in capsys.readouterr().out
    assert not osp.exists(tmp_path / 'out.pth')


def test_backbone_init_cfg_reads_official_mona_files(tmp_path, base):
    model = trained(retinanet_cfg(base))
    torch.save(to_official_mona(model), tmp_path / 'official.pth')
    backbone = build(retinanet_cfg(tmp_path / 'official.pth')).backbone
    backbone.init_weights()
    assert not backbone.pretrained_report.missing_adapter
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(backbone.state_dict()[key], value), key


# -- adapter-only <-> full ----------------------------------------------------
def test_merge_adapter_makes_a_plain_full_checkpoint(tmp_path, monkeypatch,
                                                     base):
    cfg = retinanet_cfg(base)
    model = trained(cfg)
    save_adapter_checkpoint(model, str(tmp_path / 'adapter.pth'),
                            config=config(cfg))
    run_tool(monkeypatch, 'merge_adapter', tmp_path / 'adapter.pth',
             tmp_path / 'full.pth')
    merged = load(tmp_path / 'full.pth')
    assert ADAPTER_META_KEY not in merged['meta']
    fresh = build(cfg)
    fresh.load_state_dict(merged['state_dict'], strict=True)
    assert_same_outputs(model, fresh)


def test_extract_adapter_from_a_full_checkpoint(tmp_path, monkeypatch, base):
    cfg = retinanet_cfg(base)
    model = trained(cfg)
    torch.save(dict(meta=dict(cfg=config(cfg).pretty_text),
                    state_dict=model.state_dict(),
                    optimizer=dict(state={}, param_groups=[])),
               tmp_path / 'full.pth')
    run_tool(monkeypatch, 'extract_adapter', tmp_path / 'full.pth',
             tmp_path / 'adapter.pth')
    adapter = load(tmp_path / 'adapter.pth')
    assert adapter['meta'][ADAPTER_META_KEY]['bases']['backbone'][
        'checkpoint'] == base
    assert len(adapter['state_dict']) < len(model.state_dict())
    run_tool(monkeypatch, 'merge_adapter', tmp_path / 'adapter.pth',
             tmp_path / 'merged.pth')
    fresh = build(cfg)
    fresh.load_state_dict(load(tmp_path / 'merged.pth')['state_dict'])
    assert_same_outputs(model, fresh)


def test_extract_adapter_refuses_a_base_that_does_not_reproduce(
        tmp_path, monkeypatch, base):
    cfg = retinanet_cfg(base)
    torch.save(dict(meta=dict(cfg=config(cfg).pretty_text),
                    state_dict=trained(cfg).state_dict()),
               tmp_path / 'full.pth')
    other = write_base(tmp_path / 'other.pth', seed=7)
    with pytest.raises(AdapterCheckpointError, match='differ from the base'):
        run_tool(monkeypatch, 'extract_adapter', tmp_path / 'full.pth',
                 tmp_path / 'adapter.pth', '--base', other)


# -- LoRA ---------------------------------------------------------------------
def test_merge_lora_writes_a_stock_swin_checkpoint(tmp_path, monkeypatch,
                                                   base):
    from mmdet.models.backbones import SwinTransformer
    from mmengine.config import Config
    cfg = retinanet_cfg(base, adapter=LORA)
    model = trained(cfg)
    save_adapter_checkpoint(model, str(tmp_path / 'lora.pth'),
                            config=config(cfg))
    run_tool(monkeypatch, 'merge_lora', tmp_path / 'lora.pth',
             tmp_path / 'merged.pth', '--out-config', tmp_path / 'stock.py')
    merged = load(tmp_path / 'merged.pth')
    assert not any('lora' in k for k in merged['state_dict'])
    stock_cfg = Config.fromfile(tmp_path / 'stock.py')
    assert stock_cfg.model.backbone.type == 'mmdet.SwinTransformer'
    stock = build(stock_cfg.model)
    assert type(stock.backbone) is SwinTransformer
    stock.load_state_dict(merged['state_dict'], strict=True)
    assert_same_outputs(model, stock, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_converter_runs_as_a_command(tmp_path):
    stock = trained_stock()
    torch.save({'model': to_official_swin(stock.state_dict())},
               tmp_path / 'ms.pth')
    result = subprocess.run(
        [sys.executable, 'tools/model_converters/swin2mmadapter.py',
         str(tmp_path / 'ms.pth'), str(tmp_path / 'out.pth')],
        cwd=REPO, capture_output=True, text=True, check=True)
    assert 'left out' in result.stdout and osp.isfile(tmp_path / 'out.pth')
