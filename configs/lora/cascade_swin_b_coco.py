# LoRA: rank-64 updates (alpha 1) on the q and v projections of every
# attention; only they train in the backbone.
_base_ = ['../_base_/cascade_swin_b_coco.py', './_base_/method.py']
model = dict(backbone=_base_.method)
