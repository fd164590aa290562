"""tools/analysis/dry_run.py: the real-size dry run of a table config (the
real model with random backbone weights, the real pipeline, generated data
at the real image sizes, the Runner of tools/train.py, then tools/test.py).
The slow test runs it for the three Mona table configs."""
import json
import math
import os.path as osp
import subprocess
import sys
import time

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper

from e2e_utils import REPO, run_tool, script_module
from mmadapter.engine.amp import cpu_has_bfloat16_kernels

MONA_CONFIGS = {
    'voc': ('configs/mona/retinanet_swin_l_voc.py', ['pascal_voc/mAP'],
            '500x375'),
    'coco': ('configs/mona/cascade_swin_b_coco.py',
             ['coco/bbox_mAP', 'coco/segm_mAP'], '640x480'),
    'ade20k': ('configs/mona/upernet_swin_l_ade20k.py', ['mIoU'],
               '683x512'),
}


def dry_run_module():
    return script_module('tools/analysis/dry_run.py')


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


@pytest.mark.parametrize('name', ['voc', 'coco'])
def test_a_float32_dry_run_of_an_amp_config_keeps_its_optimizer(
        name, tmp_path):
    """Without autocast the derived config has a plain OptimWrapper with the
    AMP config's optimizer, paramwise_cfg and the rest, and it builds."""
    module = dry_run_module()
    config = osp.join(REPO, MONA_CONFIGS[name][0])
    real = Config.fromfile(config)
    assert real.optim_wrapper.type == 'AmpOptimWrapper'
    derived = tmp_path / 'dry.py'
    derived.write_text(module.dry_run_config(
        config, name, 2,
        module.float32_optim_wrapper(real.optim_wrapper.to_dict())))
    wrapper_cfg = Config.fromfile(str(derived)).optim_wrapper
    assert wrapper_cfg.type == 'OptimWrapper' and 'loss_scale' not in \
        wrapper_cfg
    real.optim_wrapper.pop('loss_scale')
    real.optim_wrapper.type = 'OptimWrapper'
    assert wrapper_cfg == real.optim_wrapper
    wrapper = build_optim_wrapper(nn.Linear(2, 2), wrapper_cfg)
    assert not isinstance(wrapper, AmpOptimWrapper)
    assert wrapper.optimizer.defaults['weight_decay'] == 0.05


def test_the_dry_run_trains_an_amp_config_in_float32_only_on_slow_bf16():
    choose = dry_run_module().choose_precision
    for precision in ('auto', 'config', 'fp32'):
        assert choose(precision, False, False, False) == (False, None)
    # a CPU without fast bfloat16 kernels: float32, and the user is told
    amp, note = choose('auto', True, False, False)
    assert not amp and 'no fast bfloat16 kernels' in note \
        and '--precision config' in note
    assert choose('config', True, False, False) == (True, None)
    assert choose('auto', True, False, True) == (True, None)
    assert choose('auto', True, True, False) == (True, None)  # CUDA
    amp, note = choose('fp32', True, True, True)
    assert not amp and '--precision fp32' in note


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
    # VOC and COCO train with AMP, on a CPU as bfloat16 autocast where it
    # has fast kernels for it (the float32 fallback is said on stdout)
    fast_amp = torch.cuda.is_available() or cpu_has_bfloat16_kernels()
    assert result['amp'] == (name != 'ade20k' and fast_amp)
    assert ('no fast bfloat16 kernels' in proc.stdout) == (
        name != 'ade20k' and not fast_amp)
    train_log = (tmp_path / 'dry' / 'train.log').read_text()
    assert ('bfloat16 autocast' in train_log) == (
        result['amp'] and not torch.cuda.is_available())
    assert result['image_size'] == size
    assert result['iters'] == 2 and result['seconds_per_iter'] > 0
    assert result['finite_losses']
    assert all(math.isfinite(v) for e in result['losses'] for v in e.values())
    assert result['train_peak_rss_gib'] > 1.0  # the real Swin-B/L, not a toy
    for key in metric_keys:
        assert key in result['metrics'], result['metrics']


def test_dry_run_all_lists_the_table_configs_and_records_their_code(
        tmp_path, monkeypatch):
    module = script_module('benchmarks/dry_run_all.py')
    configs = module.table_configs(vit=False)
    assert len(configs) == 30 and all(osp.isfile(osp.join(REPO, c))
                                      for c in configs)
    assert configs[:3] == [f'configs/mona/{s}.py' for s in module.SETTINGS]
    monkeypatch.setattr(module, 'HERE', str(tmp_path))
    ok = dict(config=configs[0], amp=True, dataset='coco',
              image_size='640x480', seconds_per_iter=5.0, train_cpu_s=90,
              train_peak_rss_gib=6.0, test_peak_rss_gib=2.5,
              finite_losses=True, load_before=1.0, commit='abc1234')
    fallback = dict(ok, config=configs[2], amp=False, precision_note=(
        dry_run_module().choose_precision('auto', True, False, False)[1]))
    failed = dict(config=configs[1], error='RuntimeError: nms', commit='a+')
    module.write_table([ok, fallback, failed], 'a CPU', 'cpu',
                       module.parse_args([]))
    table = (tmp_path / 'DRY_RUN_cpu.md').read_text()
    rows = [line for line in table.splitlines() if line.startswith('| `')]
    assert rows[0].startswith(f'| `{configs[0]}` | coco 640x480 | AMP')
    assert rows[0].endswith('| yes | 1.0 | abc1234 |')
    assert '| fp32 in place of AMP (no fast bf16 on this CPU) |' in rows[1]
    assert 'failed: RuntimeError: nms' in rows[2] and rows[2].endswith(
        '| a+ |')
    assert '2 of 3 finished' in table
    assert module.code_version().rstrip('+') == subprocess.run(
        ['git', '-C', REPO, 'rev-parse', '--short', 'HEAD'],
        capture_output=True, text=True).stdout.strip()


def _running(pid):
    """Whether process ``pid`` exists and has not exited (a zombie waiting
    to be reaped has)."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return not f.read().rsplit(') ', 1)[1].startswith('Z')
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='PR_SET_PDEATHSIG is Linux-only')
def test_a_killed_dry_run_leaves_no_training_behind(tmp_path):
    """run_measured's child dies with the dry run (a test's timeout kills
    only the dry run: its training used to run on for minutes)."""
    tool = osp.join(REPO, 'tools', 'analysis', 'dry_run.py')
    pid_file = tmp_path / 'child.pid'
    child_code = (f'import os, time; open({str(pid_file)!r}, "w")'
                  '.write(str(os.getpid())); time.sleep(120)')
    script = tmp_path / 'parent.py'
    script.write_text(
        'import runpy, sys\n'
        f'tool = runpy.run_path({tool!r})\n'
        f'tool["run_measured"]([sys.executable, "-c", {child_code!r}], '
        f'{str(tmp_path / "log.txt")!r})\n')
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < deadline and parent.poll() is None
        time.sleep(0.1)
    child = int(pid_file.read_text())
    parent.kill()
    parent.wait()
    deadline = time.time() + 10
    while _running(child) and time.time() < deadline:
        time.sleep(0.1)
    assert not _running(child), "the dry run's child outlived it"
