# Adapter (Houlsby): bottleneck (64) adapters on the attention and MLP
# branch outputs; only they train in the backbone.
_base_ = ['../_base_/upernet_swin_l_ade20k.py', './_base_/method.py']
model = dict(backbone=_base_.method)
