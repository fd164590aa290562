# LoRand: multi-branch low-rank adapters on the attention and MLP branch
# outputs; only they train in the backbone.
_base_ = ['../_base_/retinanet_swin_l_voc.py', './_base_/method.py']
model = dict(backbone=_base_.method)
