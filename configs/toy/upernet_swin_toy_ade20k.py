# Toy version of configs/mona/upernet_swin_l_ade20k.py for CPU smoke runs on
# the data of tools/misc/make_toy_data.py (labels 1..4, reduce_zero_label):
# the same UperNet and FCN auxiliary heads, pipeline and single-scale mIoU,
# with a tiny randomly initialised Swin (Mona adapters), 128x128 crops and a
# 300-iteration schedule. For CPU speed the UperNet head is 128 channels wide
# (not 512), with BN in place of SyncBN.
_base_ = ['../mona/upernet_swin_l_ade20k.py', './_base_/cpu_toy.py']

crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=_base_.tiny_swin,
    decode_head=dict(
        in_channels=[32, 64, 128, 256], channels=128, norm_cfg=norm_cfg),
    auxiliary_head=dict(in_channels=128, norm_cfg=norm_cfg))

data_root = 'data/toy/ade/ADEChallengeData2016'
img_scale = (512, 128)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomResize',
        scale=img_scale,
        ratio_range=(0.5, 2.0),
        keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(t, scale=img_scale) if t.type == 'Resize' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=2,
    **_base_.cpu_loading,
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    **_base_.cpu_loading,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 300
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=30),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=30,
         end=max_iters)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1))

# multi-process runs on CPU (tools/dist_train.sh CONFIG 2) use gloo
env_cfg = dict(dist_cfg=dict(backend='gloo'))
