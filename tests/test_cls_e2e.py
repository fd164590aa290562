"""Classification end to end, through the real tools and Runner: per dataset
format, generate a tiny dataset, train the toy config (Mona) a few
iterations, save, test with tools/test.py and read the real accuracy; an
adapter-only checkpoint of a classifier restored by tools/test.py; and a
tiny Swin with Mona learning the generated Flowers102 task."""
import os.path as osp
import pickle

import pytest

from e2e_utils import (
    data_root_options,
    last_checkpoint,
    logged_metrics,
    run_tool,
    short_schedule_options,
    toy_config,
    toy_data,
    validation_metrics,
)
from mmadapter.safe_load import load_file
from tiny_detectors import write_base

pytestmark = pytest.mark.slow
ITERS = 3
METRICS = ('accuracy/top1', 'accuracy/top5')


def make_data(name, out_dir, **sizes):
    """The generated dataset of ``name`` and the data_root its config
    reads."""
    if name == 'voc2007':
        data = toy_data().make_voc(out_dir, img_size=96, **sizes)
        return osp.join(data['root'], 'VOC2007')
    writer = dict(flowers102='make_flowers102', pets='make_pets')[name]
    return getattr(toy_data(), writer)(out_dir, **sizes)['root']


@pytest.mark.parametrize('name', ['flowers102', 'pets', 'voc2007'])
def test_train_checkpoint_and_test(name, tmp_path):
    config = toy_config(name)
    root = make_data(name, str(tmp_path / 'data'), num_train=6, num_val=4)
    data_options = data_root_options(config, root)
    work_dir = tmp_path / 'train'
    run_tool(['train.py', config, '--work-dir', work_dir, '--cfg-options',
              *data_options, *short_schedule_options(ITERS)],
             cwd=str(tmp_path))
    checkpoint = last_checkpoint(str(work_dir))
    state = load_file(checkpoint)['state_dict']
    assert any('.adapters.post_attn.mona_op.' in k for k in state)
    assert 'head.fc.weight' in state
    assert all(k in validation_metrics(str(work_dir))[-1] for k in METRICS)

    # one of them also with flip TTA and a prediction dump
    predictions = tmp_path / 'predictions.pkl'
    options = ['--tta', '--out', predictions] if name == 'flowers102' \
        else []
    run_tool(['test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
              *options, '--cfg-options', *data_options], cwd=str(tmp_path))
    metrics = logged_metrics(str(tmp_path / 'test'))
    for key in METRICS:
        assert 0 <= metrics[key] <= 100, (key, metrics)
    assert metrics['accuracy/top5'] >= metrics['accuracy/top1']
    if options:
        with open(predictions, 'rb') as f:
            dumped = pickle.load(f)
        assert len(dumped) == 4 and 'pred_score' in dumped[0]


def test_tools_test_on_an_adapter_only_classifier_checkpoint(tmp_path):
    root = make_data('pets', str(tmp_path / 'data'), num_train=4, num_val=4)
    base = write_base(tmp_path / 'base.pth')  # the toy config's tiny Swin
    config = tmp_path / 'toy_pets_adapter_only.py'
    config.write_text(
        f"_base_ = [{toy_config('pets')!r}]\n"
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
        f"type='Pretrained', checkpoint={base!r})))\n"
        "default_hooks = dict(checkpoint=dict("
        "type='mmadapter.AdapterCheckpointHook', adapter_only=True))\n")
    config = str(config)
    options = data_root_options(config, root)
    run_tool(['train.py', config, '--work-dir', tmp_path / 'train',
              '--cfg-options', *options, *short_schedule_options(ITERS)],
             cwd=str(tmp_path))
    checkpoint = last_checkpoint(str(tmp_path / 'train'))
    state = load_file(checkpoint)['state_dict']
    assert not any(k.endswith('attn.w_msa.qkv.weight') for k in state)
    assert {'head.fc.weight', 'head.fc.bias'} <= set(state)
    proc = run_tool(['test.py', config, checkpoint, '--work-dir',
                     tmp_path / 'test', '--cfg-options', *options],
                    cwd=str(tmp_path))
    assert 'accuracy/top1' in logged_metrics(str(tmp_path / 'test'))
    assert base in proc.stdout + proc.stderr


def test_mona_learns_generated_flowers(tmp_path):
    config = toy_config('flowers102')
    root = make_data('flowers102', str(tmp_path / 'data'), num_train=64,
                     num_val=32)
    work_dir = tmp_path / 'train'
    run_tool(['train.py', config, '--work-dir', work_dir, '--cfg-options',
              *data_root_options(config, root), 'randomness.seed=0'],
             cwd=str(tmp_path))
    accuracy = validation_metrics(str(work_dir))[-1]['accuracy/top1']
    # 4 classes, balanced: chance is 25% (78% seen after the 120 iterations)
    assert accuracy >= 60, accuracy
