# Fixed: the backbone is frozen; neck and head train.
_base_ = ['../_base_/upernet_swin_l_ade20k.py', './_base_/method.py']
model = dict(backbone=_base_.method)
