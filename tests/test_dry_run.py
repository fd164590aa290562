"""tools/analysis/dry_run.py: the real-size dry run of a table config (the
real model with random backbone weights, the real pipeline, generated data
at the real image sizes, the Runner of tools/train.py, then tools/test.py).
The slow test runs it for the three Mona table configs."""
import importlib.util
import json
import math
import os.path as osp

import pytest
from mmengine.config import Config

from e2e_utils import REPO, run_tool

MONA_CONFIGS = {
    'voc': ('configs/mona/retinanet_swin_l_voc.py', ['pascal_voc/mAP'],
            '500x375'),
    'coco': ('configs/mona/cascade_swin_b_coco.py',
             ['coco/bbox_mAP', 'coco/segm_mAP'], '640x480'),
    'ade20k': ('configs/mona/upernet_swin_l_ade20k.py', ['mIoU'],
               '683x512'),
}


def dry_run_module():
    path = osp.join(REPO, 'tools', 'analysis', 'dry_run.py')
    spec = importlib.util.spec_from_file_location('dry_run', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('name', list(MONA_CONFIGS))
def test_dry_run_config_keeps_the_real_model_and_pipeline(name, tmp_path):
    """The derived config changes only weights, schedule length, logging,
    validation and data loading workers; model and pipelines stay."""
    module = dry_run_module()
    config = osp.join(REPO, MONA_CONFIGS[name][0])
    real = Config.fromfile(config)
    assert module.dataset_kind(real) == name
    derived = tmp_path / 'dry.py'
    derived.write_text(module.dry_run_config(config, name, 2))
    cfg = Config.fromfile(str(derived))
    assert cfg.model.backbone.init_cfg is None
    real.model.backbone.init_cfg = None
    if name == 'coco':  # an untrained model's detections reach CocoMetric
        assert cfg.model.test_cfg.rcnn.score_thr == 0.0
        real.model.test_cfg.rcnn.score_thr = 0.0
    assert cfg.model == real.model
    assert cfg.train_pipeline == real.train_pipeline
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=2)
    assert cfg.val_cfg is None and cfg.default_hooks.checkpoint.interval == 2
    assert cfg.optim_wrapper == real.optim_wrapper
    assert cfg.test_evaluator == real.test_evaluator


@pytest.mark.slow
@pytest.mark.parametrize('name', list(MONA_CONFIGS))
def test_mona_table_config_trains_and_tests_at_real_size(name, tmp_path):
    config, metric_keys, size = MONA_CONFIGS[name]
    proc = run_tool(['analysis/dry_run.py', osp.join(REPO, config),
                     '--work-dir', tmp_path / 'dry', '--iters', '2',
                     '--num-train', '2', '--num-val', '1'],
                    cwd=str(tmp_path), timeout=1200)
    assert 'random weights' in proc.stdout
    assert 'seconds per iteration' in proc.stdout
    with open(tmp_path / 'dry' / 'dry_run.json') as f:
        result = json.load(f)
    assert result['image_size'] == size
    assert result['iters'] == 2 and result['seconds_per_iter'] > 0
    assert result['finite_losses']
    assert all(math.isfinite(v) for e in result['losses'] for v in e.values())
    assert result['train_peak_rss_gib'] > 1.0  # the real Swin-B/L, not a toy
    for key in metric_keys:
        assert key in result['metrics'], result['metrics']
