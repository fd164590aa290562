"""Mixed precision and adapter-only checkpoints through the real tools on
the toy VOC pipeline: `--amp` trains Mona and LoRA on the CPU (bf16
autocast) without a non-finite loss, and tools/test.py evaluates an
adapter-only checkpoint with the base weights really loaded."""
import glob
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from e2e_utils import (
    data_root_options,
    last_checkpoint,
    logged_metrics,
    run_tool,
    short_schedule_options,
    toy_config,
    toy_data,
)
from mmadapter.safe_load import load_file

pytestmark = pytest.mark.slow
ADAPTERS = {
    'Mona': "dict(type='Mona', bottleneck=16)",
    'LoRA': "dict(type='LoRA', rank=8)",
}


def config_with_adapter(tmp_path, adapter):
    """The toy VOC config with another adapter (a config file: --cfg-options
    cannot replace a whole dict)."""
    path = tmp_path / f'toy_voc_{adapter.lower()}.py'
    path.write_text(
        f"_base_ = [{toy_config('voc')!r}]\n"
        f"model = dict(backbone=dict(adapter=dict(_delete_=True, "
        f"**{ADAPTERS[adapter]})))\n")
    return str(path)


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    root = tmp_path_factory.mktemp('voc')
    return toy_data().make_voc(str(root / 'data'), num_train=4, num_val=2,
                               img_size=(160, 128))['root']


def train_losses(work_dir):
    log = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                    'scalars.json')))[-1]
    with open(log) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [row['loss'] for row in rows if 'loss' in row]


@pytest.mark.parametrize('adapter', sorted(ADAPTERS))
def test_amp_training_stays_finite(adapter, voc, tmp_path):
    config = config_with_adapter(tmp_path, adapter)
    cfg = Config.fromfile(config)
    assert cfg.model.backbone.adapter.type == adapter
    assert 'mmadapter.NonFiniteLossHook' in {h['type']
                                            for h in cfg.custom_hooks}
    work_dir = tmp_path / 'amp'
    run_tool(['train.py', config, '--amp', '--work-dir', work_dir,
              '--cfg-options', *data_root_options(config, voc),
              *short_schedule_options(6)], cwd=str(tmp_path))
    losses = train_losses(str(work_dir))
    assert len(losses) >= 6 and all(math.isfinite(v) for v in losses)
    state = load_file(last_checkpoint(str(work_dir)))['state_dict']
    marker = 'mona_op' if adapter == 'Mona' else '.lora.'
    assert any(marker in k for k in state)


def test_tools_test_on_an_adapter_only_checkpoint(voc, tmp_path):
    config = toy_config('voc')
    data = data_root_options(config, voc)
    base = tmp_path / 'base.pth'
    run_tool(['misc/untrained_checkpoint.py', config, base, '--cfg-options',
              *data], cwd=str(tmp_path))
    backbone_base = tmp_path / 'backbone_base.pth'
    full = load_file(base)
    torch.save({k[len('backbone.'):]: v
                for k, v in full['state_dict'].items()
                if k.startswith('backbone.') and 'adapters.' not in k},
               backbone_base)
    config = tmp_path / 'toy_voc_adapter_only.py'
    config.write_text(
        f"_base_ = [{toy_config('voc')!r}]\n"
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
        "type='Pretrained', "
        f"checkpoint={str(backbone_base)!r})))\n"
        "default_hooks = dict(checkpoint=dict("
        "type='mmadapter.AdapterCheckpointHook', adapter_only=True))\n")
    config, options = str(config), data
    run_tool(['train.py', config, '--work-dir', tmp_path / 'train',
              '--cfg-options', *options, *short_schedule_options(3)],
             cwd=str(tmp_path))
    checkpoint = last_checkpoint(str(tmp_path / 'train'))
    state = load_file(checkpoint)['state_dict']
    assert not any(k.endswith('attn.w_msa.qkv.weight') for k in state)
    assert any('mona_op' in k for k in state)
    proc = run_tool(['test.py', config, checkpoint, '--work-dir',
                     tmp_path / 'test', '--cfg-options', *options],
                    cwd=str(tmp_path))
    assert 'pascal_voc/mAP' in logged_metrics(str(tmp_path / 'test'))
    assert str(backbone_base) in proc.stdout + proc.stderr
