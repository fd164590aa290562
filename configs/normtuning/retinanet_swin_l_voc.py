# NormTuning: only the backbone's normalisation layers train.
_base_ = ['../_base_/retinanet_swin_l_voc.py', './_base_/method.py']
model = dict(backbone=_base_.method)
