# What the toy configs share, under names of their own (mmengine refuses a
# key that two sibling bases both define, and the stock bases define model,
# dataloaders and hooks): the tiny randomly initialised Swin they train and
# the single-process data loading that suits a small CPU machine.
tiny_swin = dict(
    embed_dims=32,
    depths=[2, 2, 2, 2],
    num_heads=[1, 2, 4, 8],
    drop_path_rate=0.1,
    init_cfg=None)
cpu_loading = dict(num_workers=0, persistent_workers=False)
