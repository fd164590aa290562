"""Tiny mmdet RetinaNets with an AdapterSwinTransformer, and their base
checkpoints, for the checkpoint and converter tests."""
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from conftest import TINY_SWIN, stock_tiny_swin

MONA = dict(type='Mona', bottleneck=8)
LORA = dict(type='LoRA', rank=4, alpha=8, targets=('q', 'v', 'fc1'))


def write_base(path, seed=1) -> str:
    """A stock tiny Swin, saved as an mmdet-format backbone file."""
    torch.manual_seed(seed)
    stock = stock_tiny_swin()
    stock.init_weights()
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in stock.state_dict().items()}},
               str(path))
    return str(path)


def retinanet_cfg(base, adapter=MONA, tuning=None) -> dict:
    """RetinaNet on the tiny Swin; the head has BatchNorm (buffers)."""
    backbone = dict(type='mmadapter.AdapterSwinTransformer', **TINY_SWIN,
                    out_indices=(1, 2, 3), adapter=adapter, tuning=tuning,
                    init_cfg=dict(type='Pretrained', checkpoint=str(base)))
    return dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor',
                               mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], bgr_to_rgb=True,
                               pad_size_divisor=32),
        backbone=backbone,
        neck=dict(type='FPN', in_channels=[64, 128, 256], out_channels=32,
                  start_level=0, num_outs=3),
        bbox_head=dict(
            type='RetinaHead', num_classes=3, in_channels=32,
            stacked_convs=1, feat_channels=32,
            norm_cfg=dict(type='BN', requires_grad=True),
            anchor_generator=dict(type='AnchorGenerator',
                                  octave_base_scale=4, scales_per_octave=1,
                                  ratios=[1.0], strides=[8, 16, 32]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder',
                            target_means=[0.0] * 4, target_stds=[1.0] * 4),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                          alpha=0.25, loss_weight=1.0),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
        test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05,
                      nms=dict(type='nms', iou_threshold=0.5),
                      max_per_img=10))


def config(model_cfg) -> Config:
    return Config(dict(
        custom_imports=dict(imports=['mmadapter'], allow_failed_imports=False),
        default_scope='mmdet', model=model_cfg))


def write_config(path, model_cfg) -> str:
    config(model_cfg).dump(str(path))
    return str(path)


def build(model_cfg):
    """The detector, without loading any weights (as tools/test.py)."""
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    return MODELS.build(model_cfg)


def trained(model_cfg, seed=2):
    """A detector as after training: base weights loaded, trained
    parameters moved away from their init, BatchNorm statistics updated."""
    model = build(model_cfg)
    model.init_weights()
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
        model.train()
        model._forward(torch.randn(2, 3, 64, 64))
    return model.eval()


def outputs(model, x):
    """Every head output in eval mode, flattened."""
    model.eval()
    with torch.no_grad():
        cls_scores, bbox_preds = model._forward(x)
    return list(cls_scores) + list(bbox_preds)


def assert_same_outputs(a, b, x=None, **tolerance):
    x = torch.randn(1, 3, 64, 64) if x is None else x
    for out_a, out_b in zip(outputs(a, x), outputs(b, x)):
        if tolerance:
            torch.testing.assert_close(out_a, out_b, **tolerance)
        else:
            assert torch.equal(out_a, out_b)
