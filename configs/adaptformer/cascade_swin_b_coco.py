# AdaptFormer: a bottleneck (64) branch beside each MLP, scaled by 0.1;
# only it trains in the backbone.
_base_ = ['../_base_/cascade_swin_b_coco.py', './_base_/method.py']
model = dict(backbone=_base_.method)
