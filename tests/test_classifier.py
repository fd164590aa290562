"""The adapter backbones inside mmpretrain's ImageClassifier (global average
pooling + linear head) with every adapter and tuning policy, the tuple the
Swin backbone returns to any neck, and the parameter report and
adapter-only checkpoints of classifiers."""
import pytest
import torch
from mmengine.registry import init_default_scope

from conftest import (
    PAPER_METHODS,
    TINY_ADAPTERS,
    TINY_SWIN,
    TINY_VIT,
    images,
    tiny_swin,
)
from mmadapter.checkpoint import (
    adapter_state_keys,
    load_adapter_checkpoint,
    save_adapter_checkpoint,
)
from mmadapter.parameter_report import parameter_report
from mmadapter.safe_load import load_file
from tiny_detectors import write_base

NUM_CLASSES = 5
POLICIES = {  # tuning -> does the backbone train anything
    'full': True, 'fixed': False, 'bitfit': True, 'norm': True,
    'partial-1': True}


def classifier_cfg(backbone: dict, in_channels: int) -> dict:
    return dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=in_channels,
                  loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
                  topk=(1, 5)))


def swin_classifier_cfg(**backbone):
    return classifier_cfg(
        dict(type='mmadapter.AdapterSwinTransformer', **TINY_SWIN,
             out_indices=(3, ), **backbone), 256)


def vit_classifier_cfg(**backbone):
    vit = dict(TINY_VIT, out_type='featmap', out_indices=[-1])
    return classifier_cfg(dict(type='mmadapter.AdapterViT', **vit,
                               **backbone), 32)


def build(cfg):
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(cfg)


def train_step(model, size=64):
    from mmpretrain.structures import DataSample
    batch = dict(
        inputs=[torch.randint(0, 255, (3, size, size), dtype=torch.uint8)
                for _ in range(2)],
        data_samples=[DataSample().set_gt_label(i) for i in (1, 3)])
    data = model.data_preprocessor(batch, training=True)
    losses = model(**data, mode='loss')
    losses['loss'].backward()
    return losses


def test_swin_returns_a_tuple_that_every_neck_takes():
    """mmdet's Swin returns a list; mmpretrain's GlobalAveragePooling
    raises 'neck inputs should be tuple or torch.tensor' on it."""
    from mmdet.models.necks import FPN
    from mmengine.registry import DefaultScope
    from mmpretrain.models.necks import GlobalAveragePooling
    from mmseg.models.decode_heads import UPerHead
    outs = tiny_swin().eval()(images(64, 64))
    assert isinstance(outs, tuple) and len(outs) == 4
    pooled = GlobalAveragePooling()(outs[-1:])
    assert pooled[0].shape == (2, 256)
    fpn = FPN(in_channels=[32, 64, 128, 256], out_channels=16, num_outs=4)
    assert [o.shape[1] for o in fpn(outs)] == [16] * 4
    # its loss is looked up in the default scope, which a Runner built by
    # an earlier test may have left at 'mmdet'
    with DefaultScope.overwrite_default_scope('mmseg'):
        uper = UPerHead(in_channels=[32, 64, 128, 256],
                        in_index=[0, 1, 2, 3], channels=16, num_classes=3,
                        pool_scales=(1, 2))
    assert uper(outs).shape == (2, 3, 16, 16)


@pytest.mark.parametrize('name', sorted(TINY_ADAPTERS))
@pytest.mark.parametrize('make_cfg', [swin_classifier_cfg,
                                      vit_classifier_cfg],
                         ids=['swin', 'vit'])
def test_classifier_with_each_adapter_trains_adapters_and_head(make_cfg,
                                                               name):
    model = build(make_cfg(adapter=TINY_ADAPTERS[name]))
    model.init_weights()
    losses = train_step(model)
    assert torch.isfinite(losses['loss'])
    adapter_keys = set(model.backbone.adapter_state_keys())
    for key, param in model.named_parameters():
        in_adapter = key.startswith('backbone.') and \
            key[len('backbone.'):] in adapter_keys
        trains = in_adapter or key.startswith('head.')
        assert param.requires_grad == trains, key
        assert (param.grad is not None) == trains, key
    model.eval()
    with torch.no_grad():
        scores = model(images(64, 64), mode='tensor')
    assert scores.shape == (2, NUM_CLASSES)


@pytest.mark.parametrize('tuning', sorted(POLICIES))
@pytest.mark.parametrize('make_cfg', [swin_classifier_cfg,
                                      vit_classifier_cfg],
                         ids=['swin', 'vit'])
def test_classifier_with_each_tuning_policy(make_cfg, tuning):
    model = build(make_cfg(tuning=tuning))
    train_step(model)
    trained = [n for n, p in model.backbone.named_parameters()
               if p.grad is not None]
    assert bool(trained) == POLICIES[tuning]
    assert trained == [n for n, p in model.backbone.named_parameters()
                       if p.requires_grad]
    assert all(p.grad is not None for p in model.head.parameters())


def test_parameter_report_counts_the_head_as_trained():
    model = build(swin_classifier_cfg(adapter=PAPER_METHODS['Mona']
                                      ['adapter']))
    report = parameter_report(model)
    groups = {name: (total, train) for name, total, train in report.groups}
    head = 256 * NUM_CLASSES + NUM_CLASSES
    assert groups == {'head': (head, head)}
    assert report.backbone_trainable == report.backbone_adapter > 0
    assert report.model_trainable == report.backbone_trainable + head
    assert 'head (trainable / total)' in report.table()


def test_adapter_only_checkpoint_of_a_classifier(tmp_path):
    base = write_base(tmp_path / 'base.pth')
    cfg = swin_classifier_cfg(
        adapter=TINY_ADAPTERS['Mona'],
        init_cfg=dict(type='Pretrained', checkpoint=base))
    model = build(cfg)
    model.init_weights()
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    path = str(tmp_path / 'adapter.pth')
    save_adapter_checkpoint(model, path)
    saved = set(load_file(path)['state_dict'])
    assert {'head.fc.weight', 'head.fc.bias'} <= saved
    assert saved == set(adapter_state_keys(model))
    assert not any(k.endswith('attn.w_msa.qkv.weight') for k in saved)

    restored = build(cfg)  # no init_weights: the base comes from the file
    load_adapter_checkpoint(restored, path)
    x = images(64, 64)
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(model(x, mode='tensor'),
                           restored(x, mode='tensor'))


@pytest.mark.parametrize('load_final_norm', [True, False])
def test_final_norm_of_a_classification_checkpoint(tmp_path, load_final_norm):
    from test_pretrained import to_official_swin, trained_stock
    official = to_official_swin(trained_stock().state_dict())
    official['norm.weight'] = torch.rand(256) + 0.5
    official['norm.bias'] = torch.rand(256)
    path = tmp_path / 'swin_official.pth'
    torch.save({'model': official}, path)
    model = tiny_swin(out_indices=(3, ), load_final_norm=load_final_norm,
                      adapter=TINY_ADAPTERS['Mona'],
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    report = model.pretrained_report
    if load_final_norm:
        assert torch.equal(model.norm3.weight, official['norm.weight'])
        assert torch.equal(model.norm3.bias, official['norm.bias'])
        assert not any(k.startswith('norm') for k in report.missing)
    else:
        assert torch.equal(model.norm3.weight, torch.ones(256))
        assert 'norm.weight' in report.unexpected
        assert sorted(report.missing) == ['norm3.bias', 'norm3.weight']
    assert not model.norm3.weight.requires_grad  # Mona: adapters only
