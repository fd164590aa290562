# LoRA: rank-64 updates (alpha 1) on the q and v projections of every
# attention; only they train in the backbone.
method = dict(
    adapter=dict(type='LoRA', rank=64, alpha=1, targets=('q', 'v')),
    tuning='adapter')
