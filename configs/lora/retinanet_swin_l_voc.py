# LoRA: rank-64 updates (alpha 1) on the q and v projections of every
# attention; only they train in the backbone.
_base_ = ['../_base_/retinanet_swin_l_voc.py', './_base_/method.py']
model = dict(backbone=_base_.method)
