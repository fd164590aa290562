# Adapter (Houlsby): bottleneck (64) adapters on the attention and MLP
# branch outputs; only they train in the backbone.
_base_ = ['./_base_/upernet_vit_b16_ade20k.py']
model = dict(
    backbone=dict(
        adapter=dict(type='Houlsby', bottleneck=64), tuning='adapter'))
