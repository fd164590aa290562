"""One process, one backbone, three tasks: the three toy pipelines (VOC
RetinaNet, COCO Cascade Mask R-CNN, ADE20K UperNet) trained one iteration
with tools/train.py on the same tiny Swin base file, saved by
AdapterCheckpointHook as adapter-only checkpoints, then served together from
one shared backbone. Predictions equal each standalone model's exactly."""
import glob
import os.path as osp

import mmcv
import pytest
import torch

from e2e_utils import (
    data_root_options,
    last_checkpoint,
    run_tool,
    short_schedule_options,
    toy_config,
    toy_data,
)
from mmadapter.apis.multitask import MultiTaskModel, init_task_model
from mmadapter.backbones import AdapterSwinTransformer
from mmadapter.insertion import AdapterSetError
from tiny_detectors import write_base

pytestmark = pytest.mark.slow
TOYS = dict(voc='make_voc', coco='make_coco', ade20k='make_ade20k')
ITERS = 1


def adapter_only_config(tmp_path, name, base):
    path = tmp_path / f'{name}_on_base.py'
    path.write_text(
        f"_base_ = [{toy_config(name)!r}]\n"
        "model = dict(backbone=dict(init_cfg=dict(_delete_=True, "
        f"type='Pretrained', checkpoint={base!r})))\n"
        "default_hooks = dict(checkpoint=dict("
        "type='mmadapter.AdapterCheckpointHook', adapter_only=True))\n")
    return str(path)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp('multitask')
    base = write_base(root / 'tiny_swin_base.pth')  # the toy configs' Swin
    checkpoints = {}
    for name, generator in TOYS.items():
        data = getattr(toy_data(), generator)(
            str(root / 'data'), num_train=2, num_val=1, img_size=(160, 128))
        config = adapter_only_config(root, name, base)
        work_dir = root / name
        run_tool(['train.py', config, '--work-dir', work_dir,
                  '--cfg-options', *data_root_options(config, data['root']),
                  *short_schedule_options(ITERS), 'val_cfg=None',
                  'val_dataloader=None', 'val_evaluator=None'],
                 cwd=str(root))
        checkpoints[name] = last_checkpoint(str(work_dir))
    images = sorted(glob.glob(str(root / 'data' / 'VOCdevkit' / 'VOC2007' /
                                  'JPEGImages' / '*.jpg')))[:1]
    return dict(root=root, base=base, checkpoints=checkpoints, images=images)


@pytest.fixture(scope='module')
def served(trained):
    return MultiTaskModel(trained['base'], trained['checkpoints'])


def assert_same_prediction(ours, theirs):
    if hasattr(theirs, 'pred_instances'):
        fields = ['bboxes', 'scores', 'labels']
        if 'masks' in theirs.pred_instances:
            fields.append('masks')
        for field in fields:
            a = getattr(ours.pred_instances, field)
            b = getattr(theirs.pred_instances, field)
            assert torch.equal(a, b), field
    else:
        assert torch.equal(ours.seg_logits.data, theirs.seg_logits.data)
        assert torch.equal(ours.pred_sem_seg.data, theirs.pred_sem_seg.data)


def test_one_backbone_serves_three_tasks_as_their_standalone_models(
        trained, served):
    backbones = {id(m) for model in served.models.values()
                 for m in model.modules()
                 if isinstance(m, AdapterSwinTransformer)}
    assert backbones == {id(served.backbone)}
    assert served.backbone.adapter_set_names() == list(TOYS)
    images = trained['images']
    results = served.predict_all(images)
    for name, checkpoint in trained['checkpoints'].items():
        standalone = init_task_model(checkpoint)
        theirs = served.toolboxes[name].inference(standalone, images)
        for ours_one, theirs_one in zip(results[name], theirs):
            assert_same_prediction(ours_one, theirs_one)
        # and the features the heads see, before any thresholding
        batch = torch.randn(1, 3, 128, 128)
        with torch.no_grad():
            ours_feats = served.models[name].extract_feat(batch)
            their_feats = standalone.extract_feat(batch)
        for a, b in zip(ours_feats, their_feats):
            assert torch.equal(a, b)
    assert results['coco'][0].pred_instances.masks.shape[-2:] == \
        results['ade20k'][0].pred_sem_seg.data.shape[-2:]


def test_switching_back_and_forth_leaves_every_frozen_tensor(trained,
                                                             served):
    backbone = served.backbone

    def snapshot():
        adapter = set(backbone.adapter_state_keys())
        frozen = {k: v.clone() for k, v in backbone.state_dict().items()
                  if k not in adapter}
        sets = {name: {k: v.clone() for k, v in s.state_dict().items()}
                for name, s in backbone.adapter_sets.items()}
        return frozen, sets

    image = trained['images'][0]
    first = served.predict('voc', image)
    before = snapshot()
    for name in ('coco', 'ade20k'):
        served.predict(name, image)
    assert_same_prediction(served.predict('voc', image), first)
    (frozen_before, sets_before), (frozen_after, sets_after) = \
        before, snapshot()
    assert frozen_before.keys() == frozen_after.keys()
    for key, tensor in frozen_before.items():
        assert torch.equal(tensor, frozen_after[key]), key
    for name, tensors in sets_before.items():
        for key, tensor in tensors.items():
            assert torch.equal(tensor, sets_after[name][key]), (name, key)


def test_a_task_trained_on_another_base_is_refused(trained, tmp_path):
    other = write_base(tmp_path / 'other_base.pth', seed=9)
    with pytest.raises(AdapterSetError, match=r"was trained on the base .*"
                       r"tiny_swin_base\.pth \(sha256 [0-9a-f]{12}"):
        MultiTaskModel(other, trained['checkpoints'])


def test_the_command_draws_each_tasks_result(trained, tmp_path):
    image = trained['images'][0]
    out_dir = tmp_path / 'vis'
    proc = run_tool(['multitask_infer.py', trained['base'], image,
                     *[f'--task={name}={path}'
                       for name, path in trained['checkpoints'].items()],
                     '--out-dir', out_dir], cwd=str(tmp_path))
    assert 'serves 3 tasks' in proc.stdout
    height, width = mmcv.imread(image).shape[:2]
    for name in TOYS:
        drawn = mmcv.imread(osp.join(out_dir, name, osp.basename(image)))
        assert drawn is not None and drawn.shape[:2] == (height, width)
