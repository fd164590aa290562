"""Fault injection on the toy VOC pipeline through tools/train.py: a
process killed (SIGKILL) in the middle of an iteration or while writing a
checkpoint, then ``--resume`` without a path, ends bit-identical (weights,
optimizer and scheduler state, random states) to the uninterrupted run with
the same seed, for iteration- and epoch-based loops and for full and
adapter-only checkpoints; the disk filling up while saving stops the run
with a clear error and the previous checkpoint intact.

One uninterrupted run per loop serves as the reference of both checkpoint
kinds: the adapter-only runs differ only in what their checkpoints store.
"""
import errno
import glob
import os
import os.path as osp
import signal

import numpy as np
import pytest
import torch
from mmengine.config import Config

from e2e_utils import (
    REPO,
    data_root_options,
    last_checkpoint,
    run_tool,
    tool_env,
    toy_config,
    toy_data,
)
from mmadapter.safe_load import load_file

pytestmark = pytest.mark.slow
TESTS = osp.dirname(osp.abspath(__file__))
ITERS, EPOCHS = 6, 2

LOOPS = {
    # checkpoints (and validation, which must not disturb the random
    # states) every 2 iterations
    'iter': f"""
train_cfg = dict(max_iters={ITERS}, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
""",
    # 4 images, 2 iterations per epoch, a checkpoint after each
    'epoch': f"""
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop',
                 max_epochs={EPOCHS}, val_interval=1)
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True),
    dataset=dict(times=1))
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1),
                     logger=dict(interval=1))
log_processor = dict(by_epoch=True)
""",
}
ADAPTER_ONLY = [
    'default_hooks.checkpoint.type=mmadapter.AdapterCheckpointHook',
    'default_hooks.checkpoint.adapter_only=True']


def load(path):
    return load_file(path)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Toy data, a backbone base file (so adapter-only checkpoints can be
    restored) and one config per loop with the fault-injection hook."""
    from mmadapter.registry import MODELS
    root = tmp_path_factory.mktemp('faults')
    data = toy_data().make_voc(str(root / 'data'), num_train=2, num_val=2,
                               img_size=(160, 128))['root']
    backbone_cfg = Config.fromfile(toy_config('voc')).model.backbone
    torch.manual_seed(1)
    backbone = MODELS.build(backbone_cfg)
    base = root / 'backbone_base.pth'
    torch.save({k: v for k, v in backbone.state_dict().items()
                if 'adapters.' not in k}, base)
    configs = {}
    for loop, text in LOOPS.items():
        path = root / f'toy_voc_{loop}_faults.py'
        path.write_text(
            f"_base_ = [{toy_config('voc')!r}]\n"
            "custom_imports = dict(imports=['mmadapter', 'fault_injection'],"
            " allow_failed_imports=False)\n"
            "custom_hooks = _base_.custom_hooks + "
            "[dict(type='FaultInjectionHook')]\n"
            "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
            f"type='Pretrained', checkpoint={str(base)!r})))\n"
            "randomness = dict(seed=0)\n" + text)
        configs[loop] = str(path)
    return dict(root=root, data=data, configs=configs)


def train(setup, loop, work_dir, *options, fault=None, resume=False,
          check=True, **env):
    config = setup['configs'][loop]
    env = tool_env(PYTHONPATH=os.pathsep.join([REPO, TESTS]),
                   OMP_NUM_THREADS='1', **env)
    env.pop('MMADAPTER_FAULT', None)
    if fault:
        env['MMADAPTER_FAULT'] = fault
    return run_tool(['train.py', config, '--work-dir', work_dir,
                     *(['--resume'] if resume else []), '--cfg-options',
                     *data_root_options(config, setup['data']), *options],
                    cwd=str(setup['root']), env=env, check=check)


@pytest.fixture(scope='module')
def reference(setup):
    """The uninterrupted run of each loop: its final checkpoint."""
    runs = {}
    for loop in LOOPS:
        work_dir = setup['root'] / f'reference_{loop}'
        train(setup, loop, work_dir)
        runs[loop] = last_checkpoint(str(work_dir))
    return runs


def equal(a, b) -> bool:
    """Bit-for-bit equality of nested checkpoint contents."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(
            equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))
    return a == b


def assert_same_run(resumed: dict, reference: dict, adapter_only: bool):
    for key in ('epoch', 'iter', 'random_states'):
        assert equal(resumed['meta'][key], reference['meta'][key]), key
    weights, expected = resumed['state_dict'], reference['state_dict']
    if adapter_only:
        assert 'adapter_checkpoint' in resumed['meta']
        assert len(weights) < len(expected)
    else:
        assert weights.keys() == expected.keys()
    different = [k for k in weights if not equal(weights[k], expected[k])]
    assert not different, f'{len(different)}/{len(weights)} tensors differ,' \
        f' e.g. {different[:5]}'
    assert equal(resumed['optimizer'], reference['optimizer'])
    assert equal(resumed['param_schedulers'], reference['param_schedulers'])


CASES = [  # loop, checkpoints, fault, the checkpoint the resume starts from
    ('iter', 'full', 'kill_iter:5', 'iter_4.pth'),
    ('iter', 'adapter_only', 'kill_save:2', 'iter_2.pth'),
    ('epoch', 'full', 'kill_save:2', 'epoch_1.pth'),
    ('epoch', 'adapter_only', 'kill_iter:3', 'epoch_1.pth'),
]


@pytest.mark.parametrize('loop,kind,fault,resumed_from', CASES)
def test_killed_run_resumes_bit_identical(setup, reference, loop, kind,
                                          fault, resumed_from):
    work_dir = setup['root'] / f'{loop}_{kind}_{fault.replace(":", "")}'
    options = ADAPTER_ONLY if kind == 'adapter_only' else []
    killed = train(setup, loop, work_dir, *options, fault=fault, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]

    latest = last_checkpoint(str(work_dir))
    assert osp.basename(latest) == resumed_from
    load(latest)  # complete
    if fault.startswith('kill_save'):
        # the half-written file was never given a checkpoint's name, and
        # the one before it was kept (max_keep_ckpts=1 deletes it after
        # the next save is complete, not before)
        partial = glob.glob(str(work_dir / '.*.pth.partial'))
        assert len(partial) == 1
        with pytest.raises(Exception):
            load(partial[0])
        assert sorted(osp.basename(p) for p in glob.glob(
            str(work_dir / '*.pth'))) == [resumed_from]

    resumed = train(setup, loop, work_dir, *options, resume=True)
    log = resumed.stdout + resumed.stderr
    assert f'Auto resumed from the latest checkpoint {latest}' in log
    assert not glob.glob(str(work_dir / '.*.partial'))
    assert_same_run(load(last_checkpoint(str(work_dir))),
                    load(reference[loop]), kind == 'adapter_only')


# ---------------------------------------------------------------- disk full
def test_disk_full_while_saving_keeps_the_previous_checkpoint(
        tmp_path, monkeypatch):
    """ENOSPC from the file system halfway through the second checkpoint:
    the run stops with an error that says so, iter_1.pth and
    last_checkpoint stay as they were, nothing half-written is left."""
    from mmengine.fileio import LocalBackend
    from mmengine.runner import Runner

    from mmadapter.engine import CheckpointWriteError
    from test_checkpoint import register_toys, runner_cfg
    from tiny_detectors import write_base

    register_toys()
    writes = []
    original = LocalBackend.put

    def put(self, obj, filepath):
        writes.append(filepath)
        if len(writes) == 2:
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 3])
            raise OSError(errno.ENOSPC, 'No space left on device')
        return original(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)
    hook = dict(type='mmadapter.AtomicCheckpointHook', interval=1,
                by_epoch=False, max_keep_ckpts=1)
    work_dir = tmp_path / 'work'
    runner = Runner.from_cfg(Config(runner_cfg(
        work_dir, write_base(tmp_path / 'base.pth'), hook)))
    with pytest.raises(CheckpointWriteError) as error:
        runner.train()
    message = str(error.value)
    first = str(work_dir / 'iter_1.pth')
    assert 'Could not write checkpoint' in message and 'iter_2.pth' in message
    assert 'the disk is full' in message and 'GiB free' in message
    assert f'The previous checkpoint {first} is intact' in message
    assert '--resume' in message
    assert error.value.errno == errno.ENOSPC
    assert last_checkpoint(str(work_dir)) == first
    files = {p for p in os.listdir(work_dir)  # less the log and config
             if osp.isfile(work_dir / p) and not p.endswith('.py')}
    assert files == {'iter_1.pth', 'last_checkpoint'}
    assert load(first)['meta']['iter'] == 1


# ------------------------------------------------------------ a lost rank
def test_lost_rank_is_named_and_the_run_resumes(setup, tmp_path):
    """Two gloo ranks started as srun or mpirun start them (no torchrun
    agent that would stop the survivor): rank 1 is killed in iteration 3;
    rank 0 stops on its own within the watchdog's bound, naming rank 1;
    tools/dist_train.sh --resume then finishes the run from iter_2.pth."""
    import subprocess
    import sys
    import time

    from e2e_utils import free_port
    config = setup['configs']['iter']
    work_dir = tmp_path / 'work'
    options = data_root_options(config, setup['data'])
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = tool_env(
            PYTHONPATH=os.pathsep.join([REPO, TESTS]), OMP_NUM_THREADS='1',
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE='2',
            MASTER_ADDR='127.0.0.1', MASTER_PORT=port,
            MMADAPTER_RANK_TIMEOUT='10', MMADAPTER_FAULT='kill_iter:3',
            MMADAPTER_FAULT_RANK='1')
        procs.append(subprocess.Popen(
            [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
             '--launcher', 'pytorch', '--work-dir', str(work_dir),
             '--cfg-options', *options], cwd=str(tmp_path), env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        _, err1 = procs[1].communicate(timeout=900)
        killed_at = time.monotonic()
        _, err0 = procs[0].communicate(timeout=120)
        stopped_after = time.monotonic() - killed_at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    assert procs[1].returncode == -signal.SIGKILL, err1[-3000:]
    assert procs[0].returncode not in (0, None), err0[-3000:]
    assert 'LostRankError: Rank 1 of 2 stopped' in err0, err0[-3000:]
    assert 'restart the job with --resume' in err0
    assert stopped_after < 60
    assert osp.basename(last_checkpoint(str(work_dir))) == 'iter_2.pth'

    env = tool_env(PYTHONPATH=os.pathsep.join([REPO, TESTS]),
                   OMP_NUM_THREADS='1', PORT=str(free_port()))
    proc = run_tool(['dist_train.sh', config, 2, '--work-dir', work_dir,
                     '--resume', '--cfg-options', *options],
                    cwd=str(tmp_path), env=env)
    assert 'Auto resumed from the latest checkpoint' in \
        proc.stdout + proc.stderr
    final = load(last_checkpoint(str(work_dir)))
    assert final['meta']['iter'] == ITERS
