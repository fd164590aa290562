"""Two-process training on CPU (gloo) through tools/dist_train.sh: DDP
keeps the ranks' adapters identical, and the checkpoint holds them."""
import os
import os.path as osp

import pytest
import torch

from e2e_utils import (
    REPO,
    data_root_options,
    free_port,
    last_checkpoint,
    logged_metrics,
    run_tool,
    short_schedule_options,
    tool_env,
    toy_config,
    toy_data,
    validation_metrics,
)
from mmadapter.safe_load import load_file

pytestmark = pytest.mark.slow
TESTS = osp.dirname(osp.abspath(__file__))


def probe_config(tmp_path, dump_dir) -> str:
    """The toy VOC config plus a hook saving every rank's trainable
    parameters (tests/rank_state_dump.py)."""
    path = tmp_path / 'toy_voc_rank_dump.py'
    path.write_text(
        f"_base_ = [{toy_config('voc')!r}]\n"
        "custom_imports = dict(imports=['mmadapter', 'rank_state_dump'],\n"
        "                      allow_failed_imports=False)\n"
        "custom_hooks = _base_.custom_hooks + [\n"
        f"    dict(type='RankStateDumpHook', out_dir={str(dump_dir)!r})]\n")
    return str(path)


def load(path):
    return load_file(path)


def test_two_gloo_processes_train_evaluate_and_checkpoint(tmp_path):
    data = toy_data().make_voc(str(tmp_path / 'data'), num_train=4,
                               num_val=2, img_size=(160, 128))
    dumps, work_dir = tmp_path / 'dumps', tmp_path / 'work'
    config = probe_config(tmp_path, dumps)
    env = tool_env(PYTHONPATH=os.pathsep.join([REPO, TESTS]),
                   PORT=str(free_port()), OMP_NUM_THREADS='1')
    run_tool(['dist_train.sh', config, 2, '--work-dir', work_dir,
              '--cfg-options', *data_root_options(config, data['root']),
              *short_schedule_options(3)],
             cwd=str(tmp_path), env=env, timeout=1200)

    before = [load(dumps / f'before_rank{r}.pth') for r in (0, 1)]
    after = [load(dumps / f'after_rank{r}.pth') for r in (0, 1)]
    assert [d['world_size'] for d in after] == [2, 2]
    assert {d['wrapper'] for d in after} == {'CPUDistributedDataParallel'}
    checkpoint = last_checkpoint(str(work_dir))
    saved = load(checkpoint)['state_dict']
    adapter_keys = [k for k in after[0]['state'] if '.adapters.' in k]
    assert adapter_keys and after[0]['state'].keys() == after[1]['state'] \
        .keys()
    for key in after[0]['state']:
        # DDP starts the ranks equal and keeps them equal, although they
        # trained on different images
        assert torch.equal(before[0]['state'][key], before[1]['state'][key])
        assert torch.equal(after[0]['state'][key], after[1]['state'][key])
        assert torch.equal(after[0]['state'][key], saved[key])
    assert any(not torch.equal(before[0]['state'][k], after[0]['state'][k])
               for k in adapter_keys), 'the adapters did not train'

    assert 'pascal_voc/mAP' in validation_metrics(str(work_dir))[-1]

    env['PORT'] = str(free_port())
    run_tool(['dist_test.sh', config, checkpoint, 2, '--work-dir',
              tmp_path / 'test', '--cfg-options',
              *data_root_options(config, data['root'])],
             cwd=str(tmp_path), env=env, timeout=600)
    assert 'pascal_voc/mAP' in logged_metrics(str(tmp_path / 'test'))
