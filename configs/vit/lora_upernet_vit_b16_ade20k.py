# LoRA: rank-64 updates (alpha 1) on the q and v projections of every
# attention; only they train in the backbone.
_base_ = ['./_base_/upernet_vit_b16_ade20k.py']
model = dict(
    backbone=dict(
        adapter=dict(type='LoRA', rank=64, alpha=1, targets=('q', 'v')),
        tuning='adapter'))
