# Partial-1: only the last block of the last stage trains.
_base_ = ['../_base_/upernet_swin_l_ade20k.py', './_base_/method.py']
model = dict(backbone=_base_.method)
