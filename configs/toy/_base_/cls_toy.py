# What the classification toy configs share, under names of their own (see
# cpu_toy.py): 64-pixel crops of the 96-pixel generated images (224 of
# 256 in the table configs), the tiny Swin's head width, and a short
# iteration-based schedule with the table's warm-up-times-cosine shape, in
# fp32, at an lr that suits a randomly initialised backbone.
cls_toy_crop = 64
cls_toy_resize = 73  # short side before the center crop: 256 * 64 / 224
cls_toy_head = dict(in_channels=256)  # the tiny Swin's last stage
cls_toy_max_iters = 120
cls_toy_train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=cls_toy_max_iters,
    val_interval=cls_toy_max_iters)
cls_toy_optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=2e-3, weight_decay=0.05, eps=1e-8,
        betas=(0.9, 0.999)),
    clip_grad=dict(max_norm=5.0))
cls_toy_param_scheduler = [
    dict(
        type='mmadapter.WarmupCosineAnnealingLR',
        warmup_end=10,
        warmup_ratio=1e-3,
        eta_min_ratio=1e-2,
        by_epoch=False,
        begin=0,
        end=cls_toy_max_iters)
]
cls_toy_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(
        by_epoch=False, interval=cls_toy_max_iters, max_keep_ckpts=1))
