"""No load runs code. A checkpoint whose unpickling would create a marker
file is handed through every entry that reads checkpoints: each refuses it,
naming the type and the opt-in, and the marker is never created. Importing
mmadapter changes nothing in the host process, the allow-list is exactly
what real checkpoints need, and a trusted type can be allowed by name
(still weights-only)."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from mmengine.runner.checkpoint import CheckpointLoader

from e2e_utils import REPO, script_module, tool_env
from mmadapter.checkpoint import (
    ALLOWED_TYPES,
    UnsafeCheckpointError,
    checkpoint_safety,
    load_file,
    read_checkpoint_file,
)
from mmadapter.checkpoint.config_text import ConfigTextError, config_from_text

CONVERTERS = sorted(
    f for f in os.listdir(osp.join(REPO, 'tools', 'model_converters'))
    if f.endswith('.py'))


class RunsCode:
    """Unpickling it creates ``marker`` (as a hostile file would run a
    shell command)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f'open({self.marker!r}, "w").close()',)


@pytest.fixture
def hostile(tmp_path):
    """A checkpoint that runs code when fully unpickled, and its marker."""
    marker = tmp_path / 'code_ran'
    proof = tmp_path / 'proof'
    pickle.loads(pickle.dumps(RunsCode(proof)))  # the payload does run
    assert proof.exists()
    path = tmp_path / 'hostile.pth'
    torch.save(dict(meta=dict(), state_dict=dict(w=torch.zeros(2)),
                    payload=RunsCode(marker)), path)
    return dict(path=str(path), marker=marker)


def assert_refused(message, hostile):
    assert 'builtins.exec' in message
    assert '--trust-checkpoint-type' in message
    assert not hostile['marker'].exists()


# --- import changes nothing
def test_importing_mmadapter_changes_nothing_in_the_host_process():
    # torch adds safe globals of its own as its modules are imported
    # (DTensor with torch.distributed.tensor): import the stack first
    probe = (
        'import torch, mmengine.dataset as d, mmengine.runner\n'
        'import mmdet.models, mmseg.models, mmpretrain.models\n'
        'from mmengine.runner.checkpoint import CheckpointLoader as L\n'
        'def state():\n'
        '    return (dict(L._schemes), d.BaseDataset.prepare_data,\n'
        '            d.BaseDataset._serialize_data,\n'
        '            set(map(repr, torch.serialization.get_safe_globals())))\n'
        'before = state()\n'
        'import mmadapter\n'
        'after = state()\n'
        'names = ("loader schemes", "prepare_data", "_serialize_data",\n'
        '         "torch safe globals")\n'
        'print([n for n, a, b in zip(names, before, after) if a != b])\n')
    out = subprocess.run([sys.executable, '-c', probe], env=tool_env(),
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == '[]'


# --- the allow-list
def mmengine_run_checkpoint(work_dir) -> str:
    """A checkpoint as mmengine's Runner and CheckpointHook write it, with
    mmadapter's RandomStateHook (numpy random state) on."""
    import torch.nn as nn
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Model(BaseModel):

        def __init__(self):
            super().__init__()
            self.linear, self.norm = nn.Linear(2, 1), nn.BatchNorm1d(1)

        def forward(self, inputs, labels=None, mode='loss'):
            out = self.norm(self.linear(inputs))
            return dict(loss=(out ** 2).mean()) if mode == 'loss' else [out]

    class Data(torch.utils.data.Dataset):

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return dict(inputs=torch.randn(2), labels=0)

    Runner(model=Model(), work_dir=str(work_dir),
           train_dataloader=dict(dataset=Data(), batch_size=2,
                                 sampler=dict(type='DefaultSampler'),
                                 collate_fn=dict(type='default_collate')),
           optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
           param_scheduler=dict(type='LinearLR', by_epoch=False, end=2),
           train_cfg=dict(by_epoch=True, max_epochs=1),
           custom_hooks=[dict(type='mmadapter.RandomStateHook')],
           default_hooks=dict(checkpoint=dict(type='CheckpointHook',
                                              interval=1)),
           default_scope='mmengine').train()
    return osp.join(str(work_dir), 'epoch_1.pth')


def test_real_checkpoints_need_exactly_the_allow_list(tmp_path):
    path = mmengine_run_checkpoint(tmp_path / 'run')
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    # numpy names the module of the numpy that wrote the file; both are
    # allowed, one of them is in this file
    # (the dtype classes are built, not named: they are not listed here)
    named = {n for n in ALLOWED_TYPES if not n.startswith('numpy.dtypes.')
             and (not n.startswith(('numpy.core.', 'numpy._core.'))
                  or n.startswith(torch.zeros(0).numpy().__reduce__()[0]
                                  .__module__))}
    assert needed == named
    with checkpoint_safety():
        assert torch.serialization.get_unsafe_globals_in_checkpoint(
            path) == []
    before = safe_globals()
    loaded = load_file(path)
    assert safe_globals() == before
    history = loaded['message_hub']['log_scalars']['train/loss']
    assert history.mean() == pytest.approx(history.data[0].mean())


def test_getattr_is_allowed_only_for_history_statistics(tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    class Reach:

        def __reduce__(self):
            return getattr, (HistoryBuffer, '__init__')

    path = tmp_path / 'reach.pth'
    torch.save(dict(x=Reach()), path)
    with pytest.raises(UnsafeCheckpointError,
                       match=r"getattr\(HistoryBuffer, '__init__'\)"):
        load_file(path)


def safe_globals():
    return set(torch.serialization.get_safe_globals())


def test_the_safe_globals_context_nests_and_restores(tmp_path):
    before = safe_globals()
    with checkpoint_safety():
        inner = safe_globals()
        assert inner > before
        with checkpoint_safety(['datetime.date']):
            assert safe_globals() > inner
        assert safe_globals() == inner
    assert safe_globals() == before


def test_a_trusted_type_is_allowed_by_name_and_stays_weights_only(tmp_path):
    path = tmp_path / 'counter.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1)),
                    meta=dict(stamp=__import__('datetime').date(2024, 1, 2))),
               path)
    with pytest.raises(UnsafeCheckpointError) as error:
        load_file(path)
    message = str(error.value)
    assert 'datetime.date' in message
    assert '--trust-checkpoint-type datetime.date' in message
    assert "trust_checkpoint_types = ['datetime.date']" in message
    assert 'weights_only=False' not in message
    loaded = load_file(path, trusted=['datetime.date'])
    assert loaded['meta']['stamp'].year == 2024
    with checkpoint_safety(['datetime.date']):
        assert read_checkpoint_file(str(path))['meta']['stamp'].day == 2
    with pytest.raises(ValueError, match='no module of it can be imported'):
        load_file(path, trusted=['nosuchmodule.Thing'])


def multitask_tool():
    """tools/multitask_infer.py as a module (its command line lives there)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'multitask_infer', osp.join(REPO, 'tools', 'multitask_infer.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_tool_takes_the_opt_in():
    from mmadapter.cli import commands as cli
    multitask = multitask_tool()
    option = ['--trust-checkpoint-type', 'a.B', '--trust-checkpoint-type',
              'c.D']
    for parser, argv in ((cli.train_parser(), ['c.py']),
                         (cli.test_parser(), ['c.py', 'k.pth'])):
        assert parser.parse_args(argv + option).trust_checkpoint_types == \
            ['a.B', 'c.D']
    assert multitask.parse_args(['b.pth', 'i.jpg', '--task', 'a=t.pth']
                                + option).trust_checkpoint_types == \
        ['a.B', 'c.D']
    for name in CONVERTERS:
        text = open(osp.join(REPO, 'tools', 'model_converters', name)).read()
        assert 'add_trust_option(parser)' in text, name
        assert 'with script_loads(args.trust_checkpoint_types)' in text, name


# --- the hostile file, every entry
def test_mmengine_loader_after_import(hostile):
    from mmengine.runner import load_checkpoint

    import mmadapter  # noqa: F401
    with pytest.raises(pickle.UnpicklingError):
        CheckpointLoader.load_checkpoint(hostile['path'])
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(torch.nn.Linear(2, 2), hostile['path'])
    assert not hostile['marker'].exists()


def test_toolbox_readers(hostile):
    from mmadapter.backbones.pretrained import read_checkpoint
    for read in (load_file, read_checkpoint_file, read_checkpoint):
        with pytest.raises(UnsafeCheckpointError) as error:
            read(hostile['path'])
        assert_refused(str(error.value), hostile)


def test_model_converters(hostile, tmp_path, monkeypatch):
    assert len(CONVERTERS) >= 6
    for name in CONVERTERS:
        module = script_module(f'tools/model_converters/{name}')
        monkeypatch.setattr(sys, 'argv', [name, hostile['path'],
                                          str(tmp_path / f'{name}.out')])
        with pytest.raises(SystemExit) as error:
            module.main()
        assert_refused(str(error.value), hostile)
        assert not any(p.startswith(f'{name}.out')
                       for p in os.listdir(tmp_path))


@pytest.fixture(scope='module')
def task_file(tmp_path_factory):
    """A real adapter-only task checkpoint (tiny RetinaNet, Mona) and its
    base."""
    from mmadapter.checkpoint import save_adapter_checkpoint
    from tiny_detectors import config, retinanet_cfg, trained, write_base
    root = tmp_path_factory.mktemp('task')
    base = write_base(root / 'base.pth')
    cfg = retinanet_cfg(base)
    path = str(root / 'task.pth')
    save_adapter_checkpoint(trained(cfg), path, config=config(cfg))
    return dict(base=base, task=path)


def test_multitask_base_and_task_files(hostile, task_file):
    multitask = multitask_tool()
    for base, task in ((task_file['base'], hostile['path']),
                       (hostile['path'], task_file['task'])):
        with pytest.raises(SystemExit) as error:
            multitask.main([base, 'img.jpg', '--task', f'a={task}'])
        assert_refused(str(error.value), hostile)


def test_adapter_set_loaders(hostile):
    from conftest import tiny_swin
    from mmadapter.apis.adapter_sets import (
        load_adapter_set,
        read_task_checkpoint,
    )
    from mmadapter.checkpoint import load_adapter_checkpoint
    backbone = tiny_swin(adapter=dict(type='Mona', bottleneck=8))
    for call in (lambda: read_task_checkpoint(hostile['path']),
                 lambda: load_adapter_set(backbone, 'x', hostile['path']),
                 lambda: load_adapter_checkpoint(backbone, hostile['path'])):
        with pytest.raises(UnsafeCheckpointError) as error:
            call()
        assert_refused(str(error.value), hostile)


# --- recorded config text is data
def test_recorded_config_is_read_as_data_never_run(tmp_path):
    marker = tmp_path / 'config_ran'
    plain = "model = dict(type='RetinaNet', num=-1, sizes=(1, 2))\nx = [None]"
    assert config_from_text(plain).model.sizes == (1, 2)
    for text in ("import os\nmodel = dict()",
                 f"model = dict(x=open({str(marker)!r}, 'w'))",
                 "model = dict(**{'a': 1})"):
        with pytest.raises(ConfigTextError, match='never run'):
            config_from_text(text)
    assert not marker.exists()


def test_checkpoint_with_a_hostile_config_text(tmp_path):
    """A weights-only-clean file whose recorded config is code: the tools
    that rebuild the model from it refuse it before running anything."""
    from mmadapter.apis.adapter_sets import read_task_checkpoint
    from mmadapter.checkpoint import checkpoint_config
    marker = tmp_path / 'config_ran'
    text = f"model = dict(type='RetinaNet')\nopen({str(marker)!r}, 'w')\n"
    checkpoint = dict(
        meta=dict(cfg=text, adapter_checkpoint=dict(
            format_version=1, config=text,
            bases=dict(backbone=dict(checkpoint='b.pth', sha256=None)))),
        state_dict=dict(w=torch.zeros(1)))
    path = tmp_path / 'config_code.pth'
    torch.save(checkpoint, path)
    with pytest.raises(ConfigTextError):
        checkpoint_config(load_file(path))
    with pytest.raises(ConfigTextError):
        read_task_checkpoint(str(path))
    for name in ('extract_adapter.py', 'merge_adapter.py', 'merge_lora.py'):
        module = script_module(f'tools/model_converters/{name}')
        sys.argv = [name, str(path), str(tmp_path / 'out.pth')]
        with pytest.raises(ConfigTextError):
            module.main()
    assert not marker.exists()
    json.dumps(checkpoint['meta'])  # (plain data throughout)


# --- tools/train.py, tools/test.py
TOY_VOC = osp.join(REPO, 'configs', 'toy', 'retinanet_swin_toy_voc.py')


@pytest.fixture(scope='module')
def voc_options(tmp_path_factory):
    from e2e_utils import data_root_options, short_schedule_options, toy_data
    root = toy_data().make_voc(str(tmp_path_factory.mktemp('voc')),
                               num_train=2, num_val=1, img_size=96)['root']
    return data_root_options(TOY_VOC, root) + short_schedule_options(1)


@pytest.mark.parametrize('entry', ['--resume', 'load_from', 'init_cfg'])
def test_train_entries(hostile, voc_options, tmp_path, entry):
    from mmadapter.cli import commands as cli
    argv = [TOY_VOC, '--work-dir', str(tmp_path / 'w')]
    options = list(voc_options)
    if entry == '--resume':
        argv += ['--resume', hostile['path']]
    elif entry == 'load_from':
        options.append(f"load_from={hostile['path']}")
    else:
        config = tmp_path / 'pretrained.py'
        config.write_text(
            f'_base_ = [{TOY_VOC!r}]\n'
            "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
            f"type='Pretrained', checkpoint={hostile['path']!r})))\n")
        argv[0] = str(config)
    with pytest.raises(SystemExit) as error:
        cli.train(argv + ['--cfg-options', *options])
    assert_refused(str(error.value), hostile)
    assert 'UnsafeCheckpointError' in str(error.value)


def test_test_entry(hostile, voc_options, tmp_path):
    from mmadapter.cli import commands as cli
    with pytest.raises(SystemExit) as error:
        cli.test([TOY_VOC, hostile['path'], '--work-dir', str(tmp_path),
                  '--cfg-options', *voc_options])
    assert_refused(str(error.value), hostile)
