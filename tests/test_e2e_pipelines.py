"""One end-to-end run per pipeline, through the real tools and Runner:
generate a tiny dataset, train the toy config (Mona) a few iterations,
save a checkpoint, test it with tools/test.py and read the real metrics."""
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

pytestmark = pytest.mark.slow
ITERS = 3

PIPELINES = {
    # name: (generator, metric keys, largest value of a metric)
    'voc': ('make_voc', ['pascal_voc/mAP'], 1),
    'coco': ('make_coco', ['coco/bbox_mAP', 'coco/segm_mAP'], 1),
    'ade20k': ('make_ade20k', ['mIoU'], 100),  # mmseg reports percents
}


@pytest.mark.parametrize('name', list(PIPELINES))
def test_train_checkpoint_and_test(name, tmp_path):
    generator, metric_keys, top = PIPELINES[name]
    config = toy_config(name)
    data = getattr(toy_data(), generator)(
        str(tmp_path / 'data'), num_train=4, num_val=2, img_size=(160, 128))
    data_options = data_root_options(config, data['root'])
    work_dir = tmp_path / 'train'
    # run outside the repository: the config's own data root is not there
    run_tool(['train.py', config, '--work-dir', work_dir, '--cfg-options',
              *data_options, *short_schedule_options(ITERS)],
             cwd=str(tmp_path))

    checkpoint = last_checkpoint(str(work_dir))
    state = load_file(checkpoint)['state_dict']
    assert any('.adapters.post_attn.mona_op.' in k for k in state), \
        'no Mona adapter in the checkpoint'
    assert all(k in validation_metrics(str(work_dir))[-1]
               for k in metric_keys)

    run_tool(['test.py', config, checkpoint, '--work-dir', tmp_path / 'test',
              '--cfg-options', *data_options], cwd=str(tmp_path))
    metrics = logged_metrics(str(tmp_path / 'test'))
    for key in metric_keys:
        assert 0 <= metrics[key] <= top, (key, metrics)
