# Partial-1: only the last block of the last stage trains.
_base_ = ['../_base_/upernet_swin_l_ade20k.py']
model = dict(backbone=dict(adapter=None, tuning='partial-1'))
