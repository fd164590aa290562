# NormTuning: only the backbone's normalisation layers train.
_base_ = ['../_base_/retinanet_swin_l_voc.py']
model = dict(backbone=dict(adapter=None, tuning='norm'))
