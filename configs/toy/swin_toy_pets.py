# Toy version of configs/mona/swin_l_pets.py for CPU runs on the data
# of `tools/misc/make_toy_data.py --dataset pets` (one class per
# drawn form): the same classifier, head, pipeline steps and metrics,
# with a tiny randomly initialised Swin (Mona adapters), 64-pixel crops
# and a short schedule.
_base_ = [
    '../mona/swin_l_pets.py', './_base_/cpu_toy.py',
    './_base_/cls_toy.py'
]

model = dict(backbone=_base_.tiny_swin, head=_base_.cls_toy_head)

data_root = 'data/toy/oxford_pets'
train_pipeline = [
    dict(t, scale=_base_.cls_toy_crop) if t.type == 'RandomResizedCrop' else t
    for t in _base_.train_pipeline
]
test_pipeline = [
    dict(t, scale=_base_.cls_toy_resize) if t.type == 'ResizeEdge' else
    dict(t, crop_size=_base_.cls_toy_crop) if t.type == 'CenterCrop' else t
    for t in _base_.test_pipeline
]
train_dataloader = dict(
    batch_size=8,
    **_base_.cpu_loading,
    sampler=dict(type='InfiniteSampler'),
    dataset=dict(data_root=data_root, pipeline=train_pipeline))
val_dataloader = dict(
    **_base_.cpu_loading,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = _base_.cls_toy_train_cfg
optim_wrapper = dict(_delete_=True, **_base_.cls_toy_optim_wrapper,
                     paramwise_cfg=_base_.optim_wrapper.paramwise_cfg)
param_scheduler = _base_.cls_toy_param_scheduler
default_hooks = _base_.cls_toy_hooks
log_processor = dict(by_epoch=False)

# multi-process runs on CPU (tools/dist_train.sh CONFIG 2) use gloo
env_cfg = dict(dist_cfg=dict(backend='gloo'))
