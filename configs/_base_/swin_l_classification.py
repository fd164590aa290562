# Image classification with Swin-L (ImageNet-22k), the recipe of the Mona
# paper's classification table (its official mmcls 0.25 runs): ImageClassifier
# with global average pooling and a linear head (cross-entropy, no label
# smoothing, init normal std 0.01); RandomResizedCrop 224 + flip 0.5 (no
# AutoAugment, mixup or cutmix), test resize short side 256 + center crop 224;
# AdamW lr 5e-4 * 16 / 512, weight decay 0.05, eps 1e-8, no decay on norms,
# biases, position embeddings/tables; gradient clip 5.0; 100 epochs of
# per-iteration cosine to 1e-2 of the base with a 20-epoch linear warm-up from
# 1e-3 as mmcv 1.x ran it; fp16; top-1/top-5 on the test split every epoch.
# Batch: 4 images/GPU x 4 GPUs. The dataset settings (swin_l_flowers102.py,
# swin_l_pets.py, swin_l_voc2007.py) add the data and the class count; the
# method configs add adapter and tuning.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
    './models/swin_l_in22k.py',
    './mmadapter_runtime.py',
]
custom_imports = dict(imports=['mmadapter'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    # the checkpoint's final norm becomes the stage-3 output norm, as the
    # mmcls Swin of the official runs loads it
    backbone=dict(
        **_base_.swin_l,
        drop_path_rate=0.3,
        out_indices=(3, ),
        load_final_norm=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        in_channels=1536,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
        init_cfg=dict(type='Normal', layer='Linear', std=0.01)))

samples_per_gpu = 4
train_dataloader = dict(batch_size=samples_per_gpu)
val_dataloader = dict(batch_size=samples_per_gpu)
test_dataloader = val_dataloader

base_lr = 5e-4 * 16 / 512  # 1.5625e-5
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(lr=base_lr),  # the stock AdamW: wd 0.05, eps 1e-8
    # mmcls 0.25's Swin recipe: mmpretrain's adds flat_decay_mult=0, which
    # would also spare the adapters' 1-D parameters (Mona's gammas) decay
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.absolute_pos_embed': dict(decay_mult=0.0),
            '.relative_position_bias_table': dict(decay_mult=0.0)
        }),
    clip_grad=dict(max_norm=5.0))

max_epochs = 100
param_scheduler = [
    dict(
        type='mmadapter.WarmupCosineAnnealingLR',
        warmup_end=20,
        warmup_ratio=1e-3,
        eta_min_ratio=1e-2,
        by_epoch=True,
        begin=0,
        end=max_epochs,
        convert_to_iter_based=True)
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=2))
# 4 GPUs x 4 images; set enable=True to scale lr to another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)
