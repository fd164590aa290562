"""Bad input stopped with a message naming the file or key and the fix,
before the first iteration: datasets empty after filtering, images missing
on disk, corrupted or truncated images, broken or mismatching checkpoint
files, unknown --cfg-options keys, a data_root holding another dataset, and
the --check-data scan. Every test checks the message a user sees."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch
from mmengine.registry import init_default_scope

from e2e_utils import REPO, data_root_options, toy_config, toy_data
from mmadapter.checkpoint.checks import (
    CheckpointFileError,
    check_checkpoint_file,
    check_run_checkpoint,
)
from mmadapter.cli import commands as cli
from mmadapter.cli.config_checks import UnknownConfigKeyWarning
from mmadapter.cli.runner_setup import load_config
from mmadapter.datasets.checks import (
    SKIP_ENV,
    BadImageError,
    EmptyDatasetError,
    MissingImagesError,
)
from mmadapter.engine.dataset_check_hook import DatasetCheckHook

VOC_CONFIG = osp.join(REPO, 'configs', 'mona', 'retinanet_swin_l_voc.py')


@pytest.fixture(autouse=True)
def checked_datasets():
    """The datasets built here are checked as in a run whose config turns
    on DatasetCheckHook (the table configs do; tools/train.py and
    tools/test.py check them in any case): importing mmadapter does not."""
    hook = DatasetCheckHook()
    yield
    hook.after_run(None)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad_input')
    make = toy_data()
    return dict(
        voc=make.make_voc(str(root / 'v'), num_train=2, num_val=2,
                          img_size=96)['root'],
        coco=make.make_coco(str(root / 'c'), num_train=3, num_val=1,
                            img_size=96)['root'])


@pytest.fixture
def voc(data, tmp_path):
    """A private copy of the toy VOC set, free to be damaged."""
    return shutil.copytree(data['voc'], tmp_path / 'VOCdevkit')


def voc_dataset(root, **kwargs):
    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    cfg = dict(type='VOCDataset', data_root=str(root),
               ann_file='VOC2007/ImageSets/Main/trainval.txt',
               data_prefix=dict(sub_data_root='VOC2007/'),
               filter_cfg=dict(filter_empty_gt=True, min_size=32,
                               bbox_min_size=32),
               pipeline=[dict(type='LoadImageFromFile'),
                         dict(type='LoadAnnotations', with_bbox=True)])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def coco_dataset(root, ann_file='annotations/instances_train2017.json',
                 **kwargs):
    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    cfg = dict(type='CocoDataset', data_root=str(root), ann_file=ann_file,
               data_prefix=dict(img='train2017/'),
               filter_cfg=dict(filter_empty_gt=True, min_size=32),
               metainfo=dict(classes=('circle', 'square', 'triangle')),
               pipeline=[])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


# ------------------------------------------------- empty after filtering
def test_class_names_matching_none_of_the_annotations(data):
    with pytest.raises(EmptyDatasetError) as error:
        coco_dataset(data['coco'], metainfo=dict(classes=('person', 'car')))
    message = str(error.value)
    assert 'instances_train2017.json has no sample left' in message
    assert 'Read from the annotations: 3 images' in message
    assert 'filter_cfg.filter_empty_gt=True drops 3 of 3' in message
    assert "The annotations use the classes 'circle'" in message
    assert "The config expects 2 classes: 'person', 'car'; 0 of them " \
        'occur' in message
    assert "metainfo=dict(classes=(...))" in message
    assert 'need at least one array' not in message


def test_every_image_too_small(voc):
    with pytest.raises(EmptyDatasetError) as error:
        voc_dataset(voc, filter_cfg=dict(filter_empty_gt=True,
                                         min_size=1000))
    message = str(error.value)
    assert 'VOCDataset from ' in message and 'trainval.txt' in message
    assert 'Read from the annotations: 2 images' in message
    assert 'filter_cfg.min_size=1000 drops 2 of 2' in message
    assert 'filter_cfg.filter_empty_gt=True drops 0 of 2' in message
    assert "'aeroplane'" in message  # the classes the XML files use
    assert 'relax the filter' in message


def test_annotation_file_without_images(data, tmp_path):
    ann = tmp_path / 'no_images.json'
    with open(osp.join(data['coco'], 'annotations',
                       'instances_train2017.json')) as f:
        content = json.load(f)
    ann.write_text(json.dumps(dict(content, images=[], annotations=[])))
    with pytest.raises(EmptyDatasetError) as error:
        coco_dataset(data['coco'], ann_file=str(ann))
    assert 'Read from the annotations: 0 images' in str(error.value)
    assert 'The annotation file lists no images' in str(error.value)


def test_annotation_file_of_zero_bytes_stops_before_the_runner(
        voc, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    open(osp.join(voc, 'VOC2012', 'ImageSets', 'Main', 'trainval.txt'),
         'w').close()
    with pytest.raises(SystemExit) as error:
        cli.train([VOC_CONFIG, '--work-dir', str(tmp_path / 'w'),
                   '--cfg-options', f'data_root={voc}'])
    message = str(error.value)
    assert 'datasets.1.ann_file' in message and 'trainval.txt' in message
    assert 'is empty (0 bytes)' in message
    assert not (tmp_path / 'w').exists()


# -------------------------------------------------------- missing images
def test_annotations_naming_missing_images(voc):
    jpegs = osp.join(voc, 'VOC2007', 'JPEGImages')
    gone = sorted(os.listdir(jpegs))[0]
    os.remove(osp.join(jpegs, gone))
    with pytest.raises(MissingImagesError) as error:
        voc_dataset(voc)
    message = str(error.value)
    assert 'trainval.txt names 1 files that are not on disk (of 2 ' \
        'samples)' in message
    assert gone in message and 'data_prefix' in message


# ---------------------------------------------------- images that break
def damage(path, how):
    content = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(content[:len(content) // 2] if how == 'truncate'
                else b'\x00garbage' * 100)


@pytest.mark.parametrize('how,problem', [
    ('truncate', 'truncated JPEG'), ('garbage', 'cannot be decoded')])
def test_unreadable_image_in_training_is_named(voc, monkeypatch, how,
                                               problem):
    monkeypatch.delenv(SKIP_ENV, raising=False)
    dataset = voc_dataset(voc)
    bad = dataset.get_data_info(0)['img_path']
    damage(bad, how)
    with pytest.raises(BadImageError) as error:
        dataset[0]
    message = str(error.value)
    assert f'Image {bad} cannot be read: {problem}' in message
    assert '--skip-bad-images' in message and 'trainval.txt' in message


def test_unreadable_image_skipped_and_counted_when_asked(voc, monkeypatch):
    from mmadapter.datasets import checks as dataset_checks
    logged = []
    monkeypatch.setattr(dataset_checks, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    monkeypatch.setenv(SKIP_ENV, '1')
    dataset = voc_dataset(voc)
    bad = dataset.get_data_info(0)['img_path']
    damage(bad, 'truncate')
    sample = dataset[0]  # another sample instead
    assert sample['img_path'] != bad
    assert logged  # (the replacement is drawn at random, maybe it again)
    assert f'Skipped unreadable image {bad}: truncated JPEG' in logged[0]
    assert f'({len(logged)} skipped so far' in logged[-1]


# ------------------------------------------------------- checkpoint files
@pytest.fixture
def bad_checkpoints(tmp_path):
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=dict(w=torch.zeros(1000))), good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:3000])
    html = tmp_path / 'html.pth'
    html.write_text('<html><body>404 Not Found</body></html>')
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    return dict(good=str(good), truncated=str(truncated), html=str(html),
                empty=str(empty))


def test_checkpoint_files_are_recognised(bad_checkpoints):
    check_checkpoint_file(bad_checkpoints['good'], 'load_from')
    for name, pattern in [
            ('truncated', r'truncated \(3000 bytes; the end of the '
             r'archive is missing\): an interrupted save'),
            ('html', "not a PyTorch checkpoint \\(it starts with '<html>"),
            ('empty', r'the file is empty \(0 bytes\)')]:
        with pytest.raises(CheckpointFileError, match=pattern):
            check_checkpoint_file(bad_checkpoints[name], 'load_from')


@pytest.fixture
def voc_options(data):
    return data_root_options(VOC_CONFIG, data['voc'])


@pytest.mark.parametrize('option', ['--resume', 'load_from', 'init_cfg'])
def test_bad_checkpoint_given_to_train(bad_checkpoints, voc_options,
                                       tmp_path, monkeypatch, option):
    monkeypatch.chdir(tmp_path)
    path = bad_checkpoints['truncated']
    argv = [VOC_CONFIG, '--work-dir', str(tmp_path / 'w')]
    extra = {'--resume': [], 'load_from': [f'load_from={path}'],
             'init_cfg': [f'model.backbone.init_cfg.checkpoint={path}']}
    if option == '--resume':
        argv += ['--resume', path]
    with pytest.raises(SystemExit) as error:
        cli.train(argv + ['--cfg-options', *voc_options, *extra[option]])
    message = str(error.value)
    named = {'--resume': f'--resume {path}', 'load_from': f'load_from {path}',
             'init_cfg': f'model.backbone.init_cfg.checkpoint {path}'}
    assert named[option] in message and 'truncated' in message
    assert not (tmp_path / 'w').exists()


def test_auto_resume_from_a_truncated_latest_names_the_earlier_one(
        bad_checkpoints, voc_options, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'w'
    work_dir.mkdir()
    earlier = work_dir / 'iter_10.pth'
    shutil.copy(bad_checkpoints['good'], earlier)
    latest = work_dir / 'iter_20.pth'
    shutil.copy(bad_checkpoints['truncated'], latest)
    (work_dir / 'last_checkpoint').write_text(str(latest))
    os.utime(earlier, (1, 1))
    with pytest.raises(SystemExit) as error:
        cli.train([VOC_CONFIG, '--work-dir', str(work_dir), '--resume',
                   '--cfg-options', *voc_options])
    message = str(error.value)
    assert f'--resume (the latest checkpoint of {work_dir}' in message
    assert f'{latest}: truncated' in message
    assert f'Resume from an earlier checkpoint: --resume {earlier}' in message


def test_bad_checkpoint_given_to_test(bad_checkpoints, voc_options,
                                      tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as error:
        cli.test([VOC_CONFIG, bad_checkpoints['html'], '--cfg-options',
                  *voc_options])
    assert f"tools/test.py CHECKPOINT {bad_checkpoints['html']}: not a " \
        'PyTorch checkpoint' in str(error.value)


def test_adapter_checkpoint_on_another_base_or_method(tmp_path):
    from mmadapter.checkpoint import save_adapter_checkpoint
    from tiny_detectors import LORA, config, retinanet_cfg, trained, write_base
    base = write_base(tmp_path / 'base.pth')
    model_cfg = retinanet_cfg(base)
    path = str(tmp_path / 'adapters.pth')
    save_adapter_checkpoint(trained(model_cfg), path,
                            config=config(model_cfg))
    check_run_checkpoint(path, 'load_from', config(model_cfg))  # fits

    other = write_base(tmp_path / 'other.pth', seed=5)
    with pytest.raises(CheckpointFileError) as error:
        check_run_checkpoint(path, 'load_from',
                             config(retinanet_cfg(other)))
    message = str(error.value)
    assert f'load_from {path} is an adapter-only checkpoint that does not ' \
        'fit this run' in message
    assert f'trained on the base {base} (sha256' in message
    assert f'init_cfg.checkpoint is {other}' in message
    assert 'Point init_cfg.checkpoint at the original base' in message

    with pytest.raises(CheckpointFileError) as error:
        check_run_checkpoint(path, 'tools/test.py CHECKPOINT',
                             config(retinanet_cfg(base, adapter=LORA)))
    message = str(error.value)
    assert 'trained with another backbone configuration (adapter: ' in message
    assert "'type': 'Mona'} in the checkpoint, {'type': 'LoRA'" in message
    assert "meta['adapter_checkpoint']['config']" in message


# --------------------------------------------------------- config keys
def test_unknown_cfg_options_key_warns_with_the_closest(tmp_path):
    with pytest.warns(UnknownConfigKeyWarning) as warned:
        cfg = load_config(VOC_CONFIG, {'model.backbone.adaptr.type': 'LoRA',
                                       'optim_wrapper.optimizer.lr': 1e-3,
                                       'randomness.seed': 0})
    messages = [str(w.message) for w in warned
                if w.category is UnknownConfigKeyWarning]
    assert len(messages) == 1, messages
    assert "--cfg-options model.backbone.adaptr.type: the config has no " \
        "key 'model.backbone.adaptr'; did you mean " \
        "'model.backbone.adapter'?" in messages[0]
    assert cfg.optim_wrapper.optimizer.lr == 1e-3


def test_data_root_holding_another_dataset(data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as error:
        cli.train([VOC_CONFIG, '--cfg-options', f'data_root={data["coco"]}'])
    message = str(error.value)
    assert f"train_dataloader.dataset.dataset.datasets.0.data_root = " \
        f"'{data['coco']}' holds a COCO dataset" in message
    assert 'is a VOCDataset, which reads Pascal VOC' in message
    assert 'use a config made for COCO' in message


# ------------------------------------------------------------ --check-data
def test_check_data_reports_every_problem_with_its_file(voc, tmp_path,
                                                         monkeypatch,
                                                         capsys):
    monkeypatch.chdir(tmp_path)
    config = toy_config('voc')
    options = data_root_options(config, str(voc))
    work_dir = tmp_path / 'w'
    assert cli.train([config, '--check-data', '--work-dir', str(work_dir),
                      '--cfg-options', *options]) is None
    assert 'no problems in 6 samples of 3 datasets' in capsys.readouterr().out

    jpegs = osp.join(voc, 'VOC2007', 'JPEGImages')
    truncated = osp.join(jpegs, sorted(os.listdir(jpegs))[0])
    damage(truncated, 'truncate')
    xml = osp.join(voc, 'VOC2012', 'Annotations',
                   sorted(os.listdir(osp.join(voc, 'VOC2012',
                                              'Annotations')))[0])
    text = open(xml).read()
    start = text.index('<xmax>') + len('<xmax>')
    end = text.index('</xmax>')
    open(xml, 'w').write(text[:start] + '500' + text[end:])
    with pytest.raises(SystemExit) as error:
        cli.train([config, '--check-data', '--work-dir', str(work_dir),
                   '--cfg-options', *options])
    out = capsys.readouterr().out
    assert f'{truncated}: truncated JPEG' in out
    image = xml.replace('Annotations', 'JPEGImages').replace('.xml', '.jpg')
    assert f'{image}: box 0 ' in out and 'is outside the 96x96 image' in out
    assert 'problems in 6 samples' in str(error.value)
    report = open(work_dir / 'check_data.txt').read()
    assert truncated in report and image in report
