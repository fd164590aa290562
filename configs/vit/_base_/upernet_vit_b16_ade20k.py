# ADE20K semantic segmentation with UperNet on ViT-B/16: the recipe of the
# Swin ADE20K setting (512x512 crops, 160k iterations, AdamW lr 6e-5 weight
# decay 0.01, poly with a 1500-iteration warmup, FP32, 8 GPUs x 2 images,
# single-scale mIoU). As in mmseg's ViT UperNet configs, four maps of
# layers 3, 6, 9 and 12 are rescaled to strides 4/8/16/32 by MultiLevelNeck
# and the auxiliary FCN head reads the last one.
_base_ = [
    '../../_base_/upernet_swin_l_ade20k.py',
    './vit_b16_in21k.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        **_base_.vit_b16,
        img_size=(512, 512),
        out_indices=[2, 5, 8, 11]),
    neck=dict(
        type='MultiLevelNeck',
        in_channels=[768, 768, 768, 768],
        out_channels=768,
        scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768]),
    auxiliary_head=dict(in_channels=768, in_index=3))

optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys=dict(_delete_=True, **_base_.vit_no_decay_keys)))
