# ADE20K semantic segmentation: UperNet + Swin-L (ImageNet-22k), the Mona
# paper's setting. From the stock config: UPerHead on all four stages
# (channels 512, pool scales 1/2/3/6), FCN auxiliary head on stage 2 (loss
# weight 0.4), SyncBN, 150 classes, 512x512 crops, AdamW weight decay 0.01,
# single-scale mIoU. Batch: 2 images/GPU x 8 GPUs. These are the baselines'
# lr 6e-5 and drop path 0.3; Mona uses 3e-4 and 0.2.
# As the official runs (mmseg 0.11, mmcv 1.x): FP32 (--amp turns mixed
# precision on), and mmcv's poly schedule (power 1, min lr 0) over 160k
# iterations from iteration 0, times the 1500-iteration linear warm-up
# (ratio 1e-6).
_base_ = [
    'mmseg::swin/swin-large-patch4-window7-in22k-pre_upernet_8xb2-160k_ade20k-512x512.py',  # noqa: E501
    './models/swin_l_in22k.py',
    './mmadapter_runtime.py',
]
custom_imports = dict(imports=['mmadapter'], allow_failed_imports=False)

# the stock config's variable, now naming the weights this config loads
checkpoint_file = _base_.swin_l.init_cfg.checkpoint
model = dict(
    backbone=dict(
        _delete_=True,
        **_base_.swin_l,
        drop_path_rate=0.3,
        out_indices=(0, 1, 2, 3)))

data_root = 'data/ade/ADEChallengeData2016'
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))

# the stock AdamW (lr 6e-5, weight decay 0.01, no decay on position tables
# and norms), in FP32
optim_wrapper = dict(type='OptimWrapper')
param_scheduler = [
    dict(
        type='mmadapter.PolyLRWithWarmup',
        power=1.0,
        eta_min=0.0,
        warmup_iters=1500,
        warmup_ratio=1e-6,
        begin=0,
        end=160000,
        by_epoch=False)
]
# 8 GPUs x 2 images; set enable=True to scale lr to another total batch
auto_scale_lr = dict(enable=False, base_batch_size=16)
