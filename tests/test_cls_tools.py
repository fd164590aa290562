"""tools/train.py, tools/test.py and tools/analysis/count_params.py with the
classification configs: the pre-flight check names the files mmpretrain's
datasets read on their own, test-time options follow mmpretrain, and the
parameter report counts the head."""
import os
import os.path as osp

import pytest
from mmengine.config import Config

from e2e_utils import REPO, run_tool, toy_data
from mmadapter.apis.toolboxes import enable_tta, toolbox_of
from mmadapter.cli import commands as cli
from mmadapter.datasets.paths import DatasetNotFoundError
from swin_counts import ARCHS, expected_trainable

CONFIGS = {name: osp.join(REPO, 'configs', 'mona', f'swin_l_{name}.py')
           for name in ('flowers102', 'pets', 'voc2007')}


def prepare_train(config, *options):
    args = cli.parse_args(cli.train_parser(),
                          [config, '--cfg-options', *options])
    return cli.prepare_train_config(args)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('data'))
    voc = toy_data().make_voc(out, num_train=2, num_val=2, img_size=96)
    return dict(
        flowers102=toy_data().make_flowers102(out, num_train=4,
                                              num_val=2)['root'],
        pets=toy_data().make_pets(out, num_train=2, num_val=2)['root'],
        voc2007=osp.join(voc['root'], 'VOC2007'))


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_generated_data_passes_the_check(name, data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = prepare_train(CONFIGS[name], f'data_root={data[name]}')
    assert cfg.train_dataloader.dataset.data_root == data[name]


@pytest.mark.parametrize('name,removed', [
    ('flowers102', 'setid.mat'),
    ('flowers102', 'imagelabels.mat'),
    ('flowers102', 'jpg'),
    ('pets', 'annotations/test.txt'),
    ('voc2007', 'ImageSets/Main/trainval.txt'),
    ('voc2007', 'Annotations'),
])
def test_a_missing_file_is_named(name, removed, data, tmp_path,
                                 monkeypatch):
    root = tmp_path / name
    os.system(f'cp -r {data[name]} {root}')
    target = root / removed
    os.system(f'rm -r {target}')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetNotFoundError) as error:
        prepare_train(CONFIGS[name], f'data_root={root}')
    message = str(error.value)
    assert repr(str(target)) in message
    assert 'README.md, section "Data preparation"' in message
    # the suggested override is a real key
    assert '--cfg-options train_dataloader.dataset.data_root=PATH' in \
        message or '--cfg-options val_dataloader.dataset.data_root=PATH' \
        in message


def test_train_stops_before_the_runner_naming_setid_mat(data, tmp_path):
    root = tmp_path / 'flowers'
    os.system(f'cp -r {data["flowers102"]} {root}')
    os.remove(root / 'setid.mat')
    proc = run_tool(['train.py', CONFIGS['flowers102'], '--work-dir',
                     tmp_path / 'wd', '--cfg-options', f'data_root={root}'],
                    cwd=str(tmp_path), check=False, timeout=300)
    assert proc.returncode != 0
    assert 'DatasetNotFoundError' in proc.stderr
    assert 'setid.mat' in proc.stderr and 'Data preparation' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'wd').exists()


def test_test_time_options_follow_mmpretrain():
    cfg = Config.fromfile(CONFIGS['pets'])
    task = toolbox_of(cfg)
    task.enable_visualization(cfg, True, 'vis', 3)
    hook = cfg.default_hooks.visualization
    assert (hook.type, hook.enable, hook.show, hook.wait_time,
            hook.out_dir) == ('VisualizationHook', True, True, 3, 'vis')

    task.add_prediction_dump(cfg, 'preds.pkl')
    assert cfg.test_evaluator[-1] == dict(type='DumpResults',
                                          out_file_path='preds.pkl')
    assert cfg.test_evaluator[0].type == 'Accuracy'
    with pytest.raises(ValueError, match='.pkl'):
        task.add_prediction_dump(cfg, 'preds.json')

    enable_tta(cfg)
    assert cfg.model.type == 'AverageClsScoreTTA'
    assert cfg.model.module.type == 'ImageClassifier'
    tta = cfg.test_dataloader.dataset.pipeline[-1]
    assert tta.type == 'TestTimeAug'
    assert [t.prob for t in tta.transforms[0]] == [0., 1.]


def test_count_params_reports_backbone_and_head(tmp_path):
    proc = run_tool(['analysis/count_params.py', CONFIGS['flowers102'],
                     '--cfg-options', 'model.backbone.init_cfg=None'],
                    cwd=str(tmp_path), timeout=300)
    mona = expected_trainable('Mona', ARCHS['swin-l'], (3, ))
    head = 1536 * 102 + 102
    rows = {line.split('  ')[0]: line.split('  ', 1)[1].split()
            for line in proc.stdout.splitlines() if '  ' in line}
    assert rows['backbone (trainable)'][0] == f'{mona:,}'
    assert rows['head (trainable / total)'] == [f'{head:,}', '/',
                                                f'{head:,}']
    assert rows['model (trainable)'] == [f'{mona + head:,}']
