# Toy version of configs/mona/retinanet_swin_l_voc.py for CPU smoke runs on
# the data of tools/misc/make_toy_data.py: the same RetinaNet head, FPN,
# pipeline and VOC07 11-point mAP, with a tiny randomly initialised Swin
# (Mona adapters), small images and a 600-iteration schedule.
_base_ = ['../mona/retinanet_swin_l_voc.py', './_base_/cpu_toy.py']

model = dict(
    backbone=_base_.tiny_swin,
    neck=dict(in_channels=[64, 128, 256]))

data_root = 'data/toy/VOCdevkit/'
img_scale = (192, 128)
train_pipeline = [
    dict(t, scale=img_scale) if t.type == 'Resize' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=img_scale) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=2,
    **_base_.cpu_loading,
    sampler=dict(type='InfiniteSampler'),
    dataset=dict(
        dataset=dict(datasets=[
            dict(voc, data_root=data_root, pipeline=train_pipeline)
            for voc in _base_.train_dataloader.dataset.dataset.datasets
        ])))
val_dataloader = dict(
    **_base_.cpu_loading,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

# RetinaNet's head is unstable with AdamW much above 2e-4 (its convs start
# at std 0.01) and learns more slowly than the RoI heads: 600 iterations.
max_iters = 600
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=_base_.optim_wrapper.paramwise_cfg,
    clip_grad=dict(max_norm=35, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters,
         milestones=[480], gamma=0.1)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)

# multi-process runs on CPU (tools/dist_train.sh CONFIG 2) use gloo
env_cfg = dict(dist_cfg=dict(backend='gloo'))
