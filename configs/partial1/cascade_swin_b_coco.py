# Partial-1: only the last block of the last stage trains.
_base_ = ['../_base_/cascade_swin_b_coco.py']
model = dict(backbone=dict(adapter=None, tuning='partial-1'))
