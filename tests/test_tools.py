"""tools/train.py and tools/test.py: options, data-path errors, config
overrides, detection/segmentation dispatch, CPU AMP and CPU launching."""
import os.path as osp

import pytest
import torch
import torch.distributed as torch_dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper, build_optim_wrapper

from e2e_utils import REPO, data_root_options, free_port, run_tool, toy_data
from mmadapter.apis.toolboxes import (
    UnsupportedToolboxError,
    enable_tta,
    toolbox_of,
)
from mmadapter.cli import commands as cli
from mmadapter.cli.runner_setup import load_config
from mmadapter.datasets.config_entries import leaf_datasets
from mmadapter.datasets.paths import DatasetNotFoundError, check_dataset_paths
from mmadapter.engine import amp
from mmadapter.engine.amp import CPUAmpOptimWrapper
from mmadapter.engine.dist import (
    CPUDistributedDataParallel,
    launcher_env,
    setup_cpu_distributed,
)

DET_CONFIG = osp.join(REPO, 'configs', 'mona', 'retinanet_swin_l_voc.py')
SEG_CONFIG = osp.join(REPO, 'configs', 'mona', 'upernet_swin_l_ade20k.py')
no_cuda = pytest.mark.skipif(torch.cuda.is_available(),
                             reason='tests the CPU fallbacks')


def parse_train(*argv):
    return cli.parse_args(cli.train_parser(), [str(a) for a in argv])


def parse_test(*argv):
    return cli.parse_args(cli.test_parser(), [str(a) for a in argv])


@pytest.fixture(scope='module')
def toy_voc(tmp_path_factory):
    out = tmp_path_factory.mktemp('data')
    return toy_data().make_voc(str(out), num_train=2, num_val=2, img_size=96)


# ------------------------------------------------------------ data paths
def test_missing_dataset_stops_train_with_a_pointer_to_the_docs(tmp_path):
    # run where data/VOCdevkit/ does not exist
    proc = run_tool(['train.py', DET_CONFIG, '--work-dir', tmp_path / 'wd'],
                    cwd=str(tmp_path), check=False, timeout=300)
    assert proc.returncode != 0
    assert 'DatasetNotFoundError' in proc.stderr
    assert "data_root = 'data/VOCdevkit/'" in proc.stderr
    assert 'Data preparation' in proc.stderr
    assert 'make_toy_data.py' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'wd').exists()  # stopped before the Runner


def test_missing_dataset_lists_every_missing_file(tmp_path, monkeypatch):
    args = parse_train(DET_CONFIG, '--cfg-options',
                       'val_dataloader.dataset.ann_file=nothing.txt')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as error:
        cli.prepare_train_config(args)
    message = str(error.value)
    for key in ('train_dataloader.dataset.dataset.datasets.0.data_root',
                'train_dataloader.dataset.dataset.datasets.1.data_root',
                'val_dataloader.dataset.data_root'):
        assert key in message
    assert 'README.md, section "Data preparation"' in message


def test_cfg_options_point_train_and_test_at_other_data(
        toy_voc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's data root is not here
    options = data_root_options(DET_CONFIG, toy_voc['root'])
    cfg = cli.prepare_train_config(
        parse_train(DET_CONFIG, '--cfg-options', *options))
    roots = [d.data_root for _, d in leaf_datasets(
        cfg.train_dataloader.dataset, 'train')]
    assert roots == [toy_voc['root']] * 2
    assert cfg.val_dataloader.dataset.data_root == toy_voc['root']

    checkpoint = tmp_path / 'model.pth'
    torch.save(dict(state_dict={}), checkpoint)
    cfg = cli.prepare_test_config(
        parse_test(DET_CONFIG, checkpoint, '--cfg-options', *options))
    assert cfg.test_dataloader.dataset.data_root == toy_voc['root']
    assert cfg.load_from == str(checkpoint)


def test_cfg_option_data_root_moves_every_dataset(toy_voc, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cli.prepare_train_config(parse_train(
        DET_CONFIG, '--cfg-options', f'data_root={toy_voc["root"]}'))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        roots = {d.data_root for _, d in leaf_datasets(cfg[loader].dataset,
                                                       loader)}
        assert roots == {toy_voc['root']}


def test_cfg_option_data_root_moves_the_coco_annotations(tmp_path,
                                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    coco = toy_data().make_coco(str(tmp_path), num_train=1, num_val=1,
                                img_size=96)
    config = osp.join(REPO, 'configs', 'mona', 'cascade_swin_b_coco.py')
    cfg = cli.prepare_train_config(parse_train(
        config, '--cfg-options', f'data_root={coco["root"]}'))
    assert cfg.val_evaluator.ann_file == osp.join(
        coco['root'], 'annotations', 'instances_val2017.json')
    assert cfg.train_dataloader.dataset.data_root == coco['root']


def test_cfg_option_data_root_needs_a_data_root_variable(tmp_path):
    config = tmp_path / 'no_root.py'
    config.write_text("train_dataloader = dict(dataset=dict(data_root='x'))\n")
    with pytest.raises(ValueError, match='no top-level data_root'):
        load_config(str(config), {'data_root': 'y'})


def test_dataset_wrappers_are_looked_through(tmp_path):
    (tmp_path / 'root' / 'imgs').mkdir(parents=True)
    (tmp_path / 'root' / 'ann.json').write_text('{}')
    good = dict(type='CocoDataset', data_root=str(tmp_path / 'root'),
                ann_file='ann.json', data_prefix=dict(img='imgs/'))
    bad = dict(good, data_prefix=dict(img='missing/'))
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='RepeatDataset', times=2, dataset=dict(
            type='ConcatDataset', datasets=[good, bad])))))
    with pytest.raises(DatasetNotFoundError) as error:
        check_dataset_paths(cfg, ['train_dataloader'])
    assert 'train_dataloader.dataset.dataset.datasets.1.data_prefix.img' \
        in str(error.value)
    assert 'datasets.0' not in str(error.value)
    cfg.train_dataloader.dataset.dataset.datasets[1] = good
    check_dataset_paths(cfg, ['train_dataloader'])


def test_evaluator_annotation_file_is_checked(tmp_path):
    cfg = Config(dict(val_evaluator=dict(
        type='CocoMetric', ann_file=str(tmp_path / 'instances_val.json'))))
    with pytest.raises(DatasetNotFoundError, match='val_evaluator.ann_file'):
        check_dataset_paths(cfg, [], ['val_evaluator'])


def test_remote_data_is_not_checked():
    cfg = Config(dict(test_dataloader=dict(dataset=dict(
        data_root='s3://bucket/coco/', ann_file='ann.json'))))
    check_dataset_paths(cfg, ['test_dataloader'])


def test_missing_checkpoint_is_a_clear_error(toy_voc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = data_root_options(DET_CONFIG, toy_voc['root'])
    with pytest.raises(SystemExit, match='Checkpoint .*nope.pth'):
        cli.test([DET_CONFIG, 'nope.pth', '--cfg-options', *options])


# --------------------------------------------------------------- options
def test_train_options_follow_mmdet():
    args = parse_train('cfg.py', '--work-dir', 'wd', '--amp',
                       '--auto-scale-lr', '--resume', '--launcher',
                       'pytorch', '--local-rank', '1', '--cfg-options',
                       'a.b=1')
    assert (args.work_dir, args.amp, args.auto_scale_lr, args.resume,
            args.launcher, args.local_rank, args.cfg_options) == \
        ('wd', True, True, 'auto', 'pytorch', 1, {'a.b': 1})
    assert parse_train('cfg.py', '--resume', 'x.pth').resume == 'x.pth'
    assert parse_train('cfg.py', '--local_rank', '2').local_rank == 2


def test_test_options_follow_mmdet():
    args = parse_test('cfg.py', 'ckpt.pth', '--work-dir', 'wd', '--out',
                      'r.pkl', '--show', '--show-dir', 'vis', '--wait-time',
                      '1', '--tta', '--launcher', 'slurm')
    assert (args.config, args.checkpoint, args.out, args.show,
            args.show_dir, args.wait_time, args.tta, args.launcher) == \
        ('cfg.py', 'ckpt.pth', 'r.pkl', True, 'vis', 1.0, True, 'slurm')


def test_work_dir_resume_and_auto_scale_lr(toy_voc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = data_root_options(DET_CONFIG, toy_voc['root'])
    cfg = cli.prepare_train_config(parse_train(
        DET_CONFIG, '--auto-scale-lr', '--resume', '--cfg-options',
        *options))
    assert cfg.work_dir == osp.join('./work_dirs', 'mona',
                                    'retinanet_swin_l_voc')
    assert cfg.auto_scale_lr.enable is True
    assert cfg.resume is True and cfg.load_from is None
    with pytest.raises(FileNotFoundError, match='--resume'):
        cli.prepare_train_config(parse_train(
            DET_CONFIG, '--resume', 'missing.pth', '--cfg-options',
            *options))
    with pytest.raises(ValueError, match='auto_scale_lr'):
        cli.prepare_train_config(parse_train(
            DET_CONFIG, '--auto-scale-lr', '--cfg-options', *options,
            'auto_scale_lr=None'))


# ------------------------------------------------------------------- AMP
@no_cuda
def test_amp_on_cpu_uses_bfloat16_autocast(toy_voc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = cli.prepare_train_config(parse_train(
        DET_CONFIG, '--amp', '--cfg-options',
        *data_root_options(DET_CONFIG, toy_voc['root'])))
    assert cfg.optim_wrapper.type == 'mmadapter.CPUAmpOptimWrapper'

    model = nn.Linear(4, 2)
    wrapper = CPUAmpOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(3, 4))
    assert out.dtype == torch.bfloat16
    wrapper.update_params(out.float().pow(2).mean())
    assert not torch.equal(before, model.weight)
    state = wrapper.state_dict()
    wrapper.load_state_dict(state)
    with pytest.raises(ValueError, match='bfloat16'):
        CPUAmpOptimWrapper(dtype='float16', optimizer=torch.optim.SGD(
            model.parameters(), lr=0.1))


@no_cuda
@pytest.mark.parametrize('fast_bf16', [True, False])
def test_amp_on_a_cpu_without_bfloat16_kernels_warns_of_the_slowdown(
        fast_bf16, monkeypatch):
    messages = []
    monkeypatch.setattr(amp, 'cpu_has_bfloat16_kernels', lambda: fast_bf16)
    monkeypatch.setattr(amp, 'print_log',
                        lambda msg, **kwargs: messages.append(msg))
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper',
                                         loss_scale='dynamic')))
    amp.fit_amp_to_device(cfg)
    assert cfg.optim_wrapper.type == 'mmadapter.CPUAmpOptimWrapper'
    slow = [m for m in messages if 'no fast bfloat16 kernels' in m]
    assert len(slow) == (0 if fast_bf16 else 1)
    if slow:
        assert '50x slower' in slow[0] and 'without --amp' in slow[0]


def test_the_float32_form_of_an_amp_optim_wrapper_builds():
    plain = amp.float32_optim_wrapper(dict(
        type='AmpOptimWrapper', loss_scale='dynamic', dtype='float16',
        optimizer=dict(type='SGD', lr=0.1), clip_grad=dict(max_norm=1.0)))
    assert plain == dict(type='OptimWrapper',
                         optimizer=dict(type='SGD', lr=0.1),
                         clip_grad=dict(max_norm=1.0))
    wrapper = build_optim_wrapper(nn.Linear(2, 2), plain)
    assert type(wrapper) is OptimWrapper


# -------------------------------------------------- detection / segmentation
def test_visualization_follows_the_task():
    det = Config.fromfile(DET_CONFIG)
    toolbox_of(det).enable_visualization(det, True, 'vis', 3)
    hook = det.default_hooks.visualization
    assert hook.type == 'DetVisualizationHook'
    assert (hook.draw, hook.show, hook.wait_time, hook.test_out_dir) == \
        (True, True, 3, 'vis')

    seg = Config.fromfile(SEG_CONFIG)
    toolbox_of(seg).enable_visualization(seg, False, 'vis', 3)
    assert seg.default_hooks.visualization.type == 'SegVisualizationHook'
    assert seg.default_hooks.visualization.draw is True
    assert seg.visualizer.save_dir == 'vis'

    del seg.default_hooks['visualization']
    with pytest.raises(ValueError, match='SegVisualizationHook'):
        toolbox_of(seg).enable_visualization(seg, True, None, 1)


def test_prediction_dump_follows_the_task():
    det = Config.fromfile(DET_CONFIG)
    toolbox_of(det).add_prediction_dump(det, 'preds.pkl')
    assert det.test_evaluator[-1] == dict(type='DumpDetResults',
                                          out_file_path='preds.pkl')
    with pytest.raises(ValueError, match='.pkl'):
        toolbox_of(det).add_prediction_dump(det, 'preds.json')

    seg = Config.fromfile(SEG_CONFIG)
    toolbox_of(seg).add_prediction_dump(seg, 'pred_dir')
    assert seg.test_evaluator.output_dir == 'pred_dir'
    assert seg.test_evaluator.keep_results is True


def test_tta_follows_the_task():
    det = Config.fromfile(DET_CONFIG)
    backbone = det.model.backbone.type
    enable_tta(det)
    assert det.model.type == 'DetTTAModel'
    assert det.model.module.backbone.type == backbone
    tta = det.test_dataloader.dataset.pipeline[-1]
    assert tta.type == 'TestTimeAug'
    # the unflipped view first: VOCMetric reads its ground truth
    assert [t.prob for t in tta.transforms[0]] == [0., 1.]
    assert 'flip' in tta.transforms[1][0].meta_keys

    seg = Config.fromfile(SEG_CONFIG)
    tta_pipeline = seg.tta_pipeline
    enable_tta(seg)
    assert seg.model.type == 'SegTTAModel'
    assert seg.test_dataloader.dataset.pipeline == tta_pipeline


def test_task_options_reject_other_scopes():
    with pytest.raises(UnsupportedToolboxError, match="'mmagic'"):
        toolbox_of(Config(dict(default_scope='mmagic')))


# ------------------------------------------------------- CPU multi-process
class TwoLayersAndAFrozenOne(BaseModel):

    def __init__(self):
        super().__init__()
        self.first, self.second = nn.Linear(4, 4), nn.Linear(4, 4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)  # never called

    def forward(self, inputs, data_samples=None, mode='loss'):
        return dict(loss=self.second(self.first(inputs)).pow(2).mean())


@pytest.fixture
def torchrun_env(monkeypatch):
    env = dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
               MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


@no_cuda
def test_cpu_launch_initialises_gloo_and_a_cpu_wrapper(torchrun_env):
    cfg = Config(dict(env_cfg=dict(dist_cfg=dict(backend='nccl'))))
    assert setup_cpu_distributed(cfg, 'none') is False
    assert 'model_wrapper_cfg' not in cfg
    assert setup_cpu_distributed(cfg, 'pytorch') is True
    assert torch_dist.get_backend() == 'gloo'
    assert cfg.model_wrapper_cfg.type == \
        'mmadapter.CPUDistributedDataParallel'

    # the Runner passes CUDA device ids; a frozen, unused layer needs no
    # find_unused_parameters
    ddp = CPUDistributedDataParallel(module=TwoLayersAndAFrozenOne(),
                                     device_ids=[0], broadcast_buffers=False)
    assert ddp.device_ids is None
    optim = torch.optim.SGD(
        [p for p in ddp.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):
        ddp(torch.randn(2, 4))['loss'].backward()
        optim.step()
        optim.zero_grad()


@no_cuda
def test_cpu_launch_keeps_custom_wrappers(torchrun_env):
    custom = dict(type='MMFullyShardedDataParallel')
    cfg = Config(dict(model_wrapper_cfg=custom))
    setup_cpu_distributed(cfg, 'pytorch')
    assert cfg.model_wrapper_cfg.type == 'MMFullyShardedDataParallel'


def test_launcher_env_names_missing_variables(monkeypatch):
    for key in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_LOCALID'):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match='SLURM_PROCID'):
        launcher_env('slurm')
    monkeypatch.setenv('OMPI_COMM_WORLD_RANK', '1')
    monkeypatch.setenv('OMPI_COMM_WORLD_SIZE', '2')
    monkeypatch.setenv('OMPI_COMM_WORLD_LOCAL_RANK', '1')
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.1')
    monkeypatch.delenv('MASTER_PORT', raising=False)
    assert launcher_env('mpi') == dict(
        RANK='1', WORLD_SIZE='2', LOCAL_RANK='1', MASTER_ADDR='10.0.0.1',
        MASTER_PORT='29500')


def test_bad_backbone_config_is_one_line_not_a_traceback(tmp_path):
    """tools/train.py reports adapter/tuning/weights mistakes before
    building the Runner."""
    import subprocess
    import sys
    config = osp.join(REPO, 'configs', 'mona', 'retinanet_swin_l_voc.py')
    voc = toy_data().make_voc(str(tmp_path / 'data'), num_train=2,
                              num_val=1)['root']
    cases = {
        'model.backbone.adapter.type=Monna': "Unknown adapter type 'Monna'",
        'model.backbone.tuning=bitfitt': "Unknown tuning policy 'bitfitt'",
        'model.backbone.init_cfg.checkpoint=nope.pth':
        "Pretrained backbone checkpoint 'nope.pth' does not exist",
    }
    for option, message in cases.items():
        proc = subprocess.run(
            [sys.executable, osp.join(REPO, 'tools', 'train.py'), config,
             '--work-dir', str(tmp_path / 'w'), '--cfg-options', option,
             *data_root_options(config, voc)],
            cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
        assert proc.returncode != 0
        assert message in proc.stderr, proc.stderr[-2000:]
        assert 'Traceback' not in proc.stderr
