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

from e2e_utils import (data_root_options, last_checkpoint, logged_metrics,
                       run_tool, short_schedule_options, toy_config, toy_data)

pytestmark = pytest.mark.slow
ADAPTERS = {
    'Mona': "model.backbone.adapter.type=Mona",
    'LoRA': "model.backbone.adapter=dict(type='LoRA',rank=8)",
}


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
    config = toy_config('voc')
    hooks = {h['type'] for h in
             __import__('mmengine').Config.fromfile(config).custom_hooks}
    assert 'mmadapter.NonFiniteLossHook' in hooks
    work_dir = tmp_path / 'amp'
    run_tool(['train.py', config, '--amp', '--work-dir', work_dir,
              '--cfg-options', *data_root_options(config, voc),
              *short_schedule_options(6),
              ADAPTERS[adapter]], cwd=str(tmp_path))
    losses = train_losses(str(work_dir))
    assert len(losses) >= 6 and all(math.isfinite(v) for v in losses)
    state = torch.load(last_checkpoint(str(work_dir)), map_location='cpu',
                       weights_only=False)['state_dict']
    marker = 'mona_op' if adapter == 'Mona' else '.lora.'
    assert any(marker in k for k in state)


def test_tools_test_on_an_adapter_only_checkpoint(voc, tmp_path):
    config = toy_config('voc')
    data = data_root_options(config, voc)
    base = tmp_path / 'base.pth'
    run_tool(['misc/untrained_checkpoint.py', config, base, '--cfg-options',
              *data], cwd=str(tmp_path))
    backbone_base = tmp_path / 'backbone_base.pth'
    full = torch.load(base, map_location='cpu', weights_only=False)
    torch.save({k[len('backbone.'):]: v
                for k, v in full['state_dict'].items()
                if k.startswith('backbone.') and 'adapters.' not in k},
               backbone_base)
    options = [*data, f'model.backbone.init_cfg.type=Pretrained',
               f'model.backbone.init_cfg.checkpoint={backbone_base}',
               'default_hooks.checkpoint.type=mmadapter.AdapterCheckpointHook',
               'default_hooks.checkpoint.adapter_only=True']
    run_tool(['train.py', config, '--work-dir', tmp_path / 'train',
              '--cfg-options', *options, *short_schedule_options(3)],
             cwd=str(tmp_path))
    checkpoint = last_checkpoint(str(tmp_path / 'train'))
    state = torch.load(checkpoint, map_location='cpu',
                       weights_only=False)['state_dict']
    assert not any(k.endswith('attn.w_msa.qkv.weight') for k in state)
    assert any('mona_op' in k for k in state)
    proc = run_tool(['test.py', config, checkpoint, '--work-dir',
                     tmp_path / 'test', '--cfg-options', *options],
                    cwd=str(tmp_path))
    assert 'pascal_voc/mAP' in logged_metrics(str(tmp_path / 'test'))
    assert str(backbone_base) in proc.stdout + proc.stderr
