# NormTuning: only the backbone's normalisation layers train.
_base_ = ['../_base_/cascade_swin_b_coco.py']
model = dict(backbone=dict(adapter=None, tuning='norm'))
