# Mona: two Mona modules per block (bottleneck 64) after the attention
# and MLP residuals; only they train in the backbone.
_base_ = ['../_base_/retinanet_swin_l_voc.py', './_base_/method.py']
model = dict(backbone=_base_.method)
