# Toy version of configs/mona/cascade_swin_b_coco.py for CPU smoke runs on
# the data of tools/misc/make_toy_data.py (classes circle, square, triangle):
# the same Cascade Mask R-CNN heads (three 4conv1fc GIoU bbox heads, 4-conv
# mask heads) and bbox + segm COCO metrics, with a tiny randomly initialised
# Swin (Mona adapters), a single-scale pipeline at short side 128 and a
# 300-iteration schedule. For CPU speed the RoI heads' convs are 64 wide
# (not 256) with BN in place of SyncBN, and fewer RoIs are sampled.
_base_ = ['../mona/cascade_swin_b_coco.py', './_base_/cpu_toy.py']

classes = ('circle', 'square', 'triangle')
model = dict(
    backbone=_base_.tiny_swin,
    neck=dict(in_channels=[32, 64, 128, 256]),
    roi_head=dict(
        bbox_head=[
            dict(
                head,
                num_classes=len(classes),
                conv_out_channels=64,
                norm_cfg=dict(type='BN', requires_grad=True))
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_head=dict(num_classes=len(classes), conv_out_channels=64)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=[
            dict(stage, sampler=dict(stage.sampler, num=64))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=100)))

data_root = 'data/toy/coco/'
img_scale = (213, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='Resize', scale=img_scale, keep_ratio=True),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(t, scale=img_scale) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
toy_data = dict(
    data_root=data_root, metainfo=dict(classes=classes))
train_dataloader = dict(
    batch_size=2,
    **_base_.cpu_loading,
    sampler=dict(type='InfiniteSampler'),
    dataset=dict(**toy_data, pipeline=train_pipeline))
val_dataloader = dict(
    **_base_.cpu_loading,
    dataset=dict(**toy_data, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

max_iters = 300
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[240], gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)

# multi-process runs on CPU (tools/dist_train.sh CONFIG 2) use gloo
env_cfg = dict(dist_cfg=dict(backend='gloo'))
