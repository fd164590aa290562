# AdaptFormer: a bottleneck (64) branch beside each MLP, scaled by 0.1;
# only it trains in the backbone.
_base_ = ['../_base_/retinanet_swin_l_voc.py', './_base_/method.py']
model = dict(backbone=_base_.method)
