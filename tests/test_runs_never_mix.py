"""Runs never mix. The method configs of one setting share a file name, so
the default work dir keeps the method folder; every checkpoint records the
model configuration it was written for, and --resume, load_from and
tools/test.py refuse another configuration's checkpoint before loading
anything, naming both. One toy training run (Mona, tools/train.py) is
shared by the tests; it is also a real checkpoint of the tools that must
load with the allow-list only."""
import os.path as osp

import pytest
import torch

from e2e_utils import (
    REPO,
    data_root_options,
    last_checkpoint,
    run_tool,
    short_schedule_options,
    toy_data,
)
from mmadapter.checkpoint import ALLOWED_TYPES, load_file
from mmadapter.checkpoint.checks import check_run_checkpoint
from mmadapter.checkpoint.model_record import (
    MODEL_RECORD_KEY,
    ModelConfigMismatchError,
    model_record,
)
from mmadapter.cli import commands as cli
from mmadapter.cli.input_checks import latest_checkpoint
from mmadapter.cli.runner_setup import default_work_dir, load_config

pytestmark = pytest.mark.slow
TOY_VOC = osp.join(REPO, 'configs', 'toy', 'retinanet_swin_toy_voc.py')
NAME = 'retinanet_swin_toy_voc'
LORA = "dict(_delete_=True, type='LoRA', rank=4, targets=('q', 'v'))"


def method_config(root, method, body=''):
    """``root/<method>/retinanet_swin_toy_voc.py``: the toy config under a
    method folder, as the table configs sit (same file name)."""
    folder = root / method
    folder.mkdir(exist_ok=True)
    path = folder / f'{NAME}.py'
    path.write_text(f'_base_ = [{TOY_VOC!r}]\n{body}')
    return str(path)


@pytest.fixture(scope='module')
def mona_run(tmp_path_factory):
    """A Mona toy run trained one iteration in ``root`` with the default
    work dir, and LoRA / other-class configs of the same file name."""
    root = tmp_path_factory.mktemp('runs')
    data = toy_data().make_voc(str(root / 'data'), num_train=2, num_val=1,
                               img_size=96)['root']
    configs = dict(
        mona=method_config(root, 'mona'),
        lora=method_config(
            root, 'lora', f'model = dict(backbone=dict(adapter={LORA}))\n'),
        mona_lr=method_config(root, 'mona_lr', 'optim_wrapper = dict('
                              'optimizer=dict(lr=1e-4))\n'),
        classes=method_config(root, 'classes', 'model = dict(bbox_head='
                              'dict(num_classes=5))\n'))
    options = data_root_options(TOY_VOC, data) + short_schedule_options(1) \
        + ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None']
    run_tool(['train.py', configs['mona'], '--cfg-options', *options],
             cwd=str(root))
    work_dir = root / 'work_dirs' / 'mona' / NAME
    return dict(root=root, configs=configs, options=options,
                work_dir=str(work_dir),
                checkpoint=last_checkpoint(str(work_dir)))


def test_default_work_dir_keeps_the_method_folder():
    assert default_work_dir('configs/mona/cascade_swin_b_coco.py') == \
        osp.join('./work_dirs', 'mona', 'cascade_swin_b_coco')
    assert default_work_dir('configs/lora/cascade_swin_b_coco.py') == \
        osp.join('./work_dirs', 'lora', 'cascade_swin_b_coco')
    assert default_work_dir('/x/configs/toy/_base_/a.py') == \
        osp.join('./work_dirs', 'toy', '_base_', 'a')
    assert default_work_dir('/elsewhere/mine/run.py') == \
        osp.join('./work_dirs', 'mine', 'run')


def test_the_run_is_a_real_checkpoint_of_the_allow_list(mona_run):
    # what the file needs beyond torch's own defaults (another test's run
    # may have left the allow-list added to this process)
    added = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    try:
        needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(
            mona_run['checkpoint']))
    finally:
        torch.serialization.add_safe_globals(added)
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in needed
    assert needed <= set(ALLOWED_TYPES)
    saved = load_file(mona_run['checkpoint'])
    assert {'meta', 'state_dict', 'optimizer', 'message_hub'} <= set(saved)
    record = saved['meta'][MODEL_RECORD_KEY]
    cfg = load_config(mona_run['configs']['mona'])
    assert record == model_record(cfg.model)
    assert record['method']['type'] == 'Mona'
    assert record['num_classes'] == {'bbox_head.num_classes': 20}


def test_the_issue_lora_resume_does_not_find_the_mona_run(mona_run,
                                                          monkeypatch):
    """The issue's case: a LoRA config of the same file name with --resume
    resumes in its own work dir, where no Mona checkpoint is."""
    monkeypatch.chdir(mona_run['root'])
    args = cli.parse_args(cli.train_parser(), [
        mona_run['configs']['lora'], '--resume', '--cfg-options',
        *mona_run['options']])
    cfg = cli.prepare_train_config(args)
    assert osp.normpath(cfg.work_dir) == osp.join('work_dirs', 'lora', NAME)
    assert latest_checkpoint(cfg.work_dir) is None
    assert latest_checkpoint(mona_run['work_dir']) == mona_run['checkpoint']


@pytest.mark.parametrize('option', ['--resume', 'auto-resume', 'load_from'])
def test_lora_run_refuses_the_mona_checkpoint(mona_run, option, monkeypatch):
    monkeypatch.chdir(mona_run['root'])
    argv = [mona_run['configs']['lora']]
    options = list(mona_run['options'])
    if option == '--resume':
        argv += ['--resume', mona_run['checkpoint']]
    elif option == 'auto-resume':  # sharing the Mona run's work dir
        argv += ['--resume', '--work-dir', mona_run['work_dir']]
    else:
        options.append(f"load_from={mona_run['checkpoint']}")
    mtime = osp.getmtime(mona_run['checkpoint'])
    with pytest.raises(SystemExit) as error:
        cli.train(argv + ['--cfg-options', *options])
    message = str(error.value)
    assert 'ModelConfigMismatchError' in message
    assert f"{mona_run['checkpoint']} was written for another model " \
        'configuration (it differs in: method)' in message
    assert "checkpoint: method Mona(bottleneck=" in message
    assert "this run:   method LoRA(rank=4, targets=['q', 'v'])" in message
    assert 'Nothing was loaded' in message
    assert osp.getmtime(mona_run['checkpoint']) == mtime
    assert not osp.exists(mona_run['root'] / 'work_dirs' / 'lora')


def test_test_py_refuses_another_configurations_checkpoint(mona_run,
                                                           monkeypatch):
    monkeypatch.chdir(mona_run['root'])
    with pytest.raises(SystemExit) as error:
        cli.test([mona_run['configs']['classes'], mona_run['checkpoint'],
                  '--cfg-options', *mona_run['options']])
    message = str(error.value)
    assert 'differs in: num_classes' in message
    assert 'num_classes bbox_head.num_classes=20' in message
    assert 'num_classes bbox_head.num_classes=5' in message


def test_same_model_other_options_still_resume(mona_run):
    """Another learning rate is the same model: the checkpoint fits (the
    work dir keeps such runs apart)."""
    for name in ('mona', 'mona_lr'):
        check_run_checkpoint(mona_run['checkpoint'], '--resume',
                             load_config(mona_run['configs'][name]))
    with pytest.raises(ModelConfigMismatchError):
        check_run_checkpoint(mona_run['checkpoint'], '--resume',
                             load_config(mona_run['configs']['lora']))


def test_stock_checkpoint_without_a_record_loads_with_a_note(mona_run,
                                                            tmp_path,
                                                            monkeypatch):
    from mmadapter.checkpoint import checks as checkpoint_checks
    logged = []
    monkeypatch.setattr(checkpoint_checks, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    saved = load_file(mona_run['checkpoint'])
    saved['meta'] = dict(epoch=1)  # no record and no recorded config
    path = str(tmp_path / 'stock.pth')
    torch.save(saved, path)
    check_run_checkpoint(path, 'load_from',
                         load_config(mona_run['configs']['mona']))
    assert len(logged) == 1
    assert f'load_from {path} records no model configuration' in logged[0]
