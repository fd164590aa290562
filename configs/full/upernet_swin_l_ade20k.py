# Full fine-tuning: every backbone parameter trains.
_base_ = ['../_base_/upernet_swin_l_ade20k.py', './_base_/method.py']
model = dict(backbone=_base_.method)
