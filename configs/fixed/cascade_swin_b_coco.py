# Fixed: the backbone is frozen; neck and head train.
_base_ = ['../_base_/cascade_swin_b_coco.py']
model = dict(backbone=dict(adapter=None, tuning='fixed'))
