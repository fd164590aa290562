# NormTuning: only the backbone's normalisation layers train.
_base_ = ['../_base_/upernet_swin_l_ade20k.py']
model = dict(backbone=dict(adapter=None, tuning='norm'))
