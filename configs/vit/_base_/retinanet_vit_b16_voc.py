# Pascal VOC detection with RetinaNet on ViT-B/16: the recipe of the Swin VOC
# setting (VOC07+12 trainval x3 for 4 epochs, lr step after epoch 3, resize
# (1000, 600), AdamW lr 1e-4 weight decay 0.05, AMP, 2 GPUs x 1 image, VOC07
# 11-point mAP@0.5). The plain ViT gives one stride-16 map (last layer); a
# ViTDet-style simple feature pyramid makes strides 8/16/32 from it and two
# stride-2 convs add P6/P7, the five levels RetinaHead's anchors expect.
_base_ = [
    '../../_base_/retinanet_swin_l_voc.py',
    './vit_b16_in21k.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        **_base_.vit_b16,
        img_size=1024,
        out_indices=[11]),
    neck=dict(
        _delete_=True,
        type='mmadapter.SimpleFeaturePyramid',
        in_channels=768,
        out_channels=256,
        scale_factors=(2.0, 1.0, 0.5),
        num_extra_levels=2,
        extra_level_type='conv',
        norm_cfg=dict(type='LN2d', eps=1e-6)))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(_delete_=True, **_base_.vit_no_decay_keys)))
