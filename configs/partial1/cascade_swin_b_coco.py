# Partial-1: only the last block of the last stage trains.
_base_ = ['../_base_/cascade_swin_b_coco.py', './_base_/method.py']
model = dict(backbone=_base_.method)
