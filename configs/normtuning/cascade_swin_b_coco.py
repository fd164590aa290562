# NormTuning: only the backbone's normalisation layers train.
_base_ = ['../_base_/cascade_swin_b_coco.py', './_base_/method.py']
model = dict(backbone=_base_.method)
