# COCO instance segmentation: Cascade Mask R-CNN + Swin-B (ImageNet-22k),
# the Mona paper's setting. The stock ConvNeXt config is the Swin paper's
# recipe: three ConvFC bbox heads (4 shared convs + 1 fc, SyncBN, GIoU loss
# weight 10, reg_decoded_bbox), DETR-style AutoAugment (short side 480..800,
# or resize 400/500/600 + random crop 384..600 + resize), flip 0.5, 36
# epochs with steps at 27 and 33, AMP. Batch: 1 image/GPU x 8 GPUs.
_base_ = [
    'mmdet::convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py',  # noqa: E501
    './models/swin_b_in22k.py',
    './mmadapter_runtime.py',
]
custom_imports = dict(imports=['mmadapter'], allow_failed_imports=False)

# the stock config's variable, now naming the weights this config loads
checkpoint_file = _base_.swin_b.init_cfg.checkpoint
model = dict(
    backbone=dict(
        _delete_=True,
        **_base_.swin_b,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

data_root = 'data/coco/'
val_ann_file = data_root + 'annotations/instances_val2017.json'
train_dataloader = dict(batch_size=1, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_evaluator = dict(ann_file=val_ann_file, metric=['bbox', 'segm'])
test_evaluator = dict(ann_file=val_ann_file, metric=['bbox', 'segm'])

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]
# 8 GPUs x 1 image; set enable=True to scale lr to another total batch
auto_scale_lr = dict(enable=False, base_batch_size=8)
