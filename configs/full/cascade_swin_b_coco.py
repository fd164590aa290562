# Full fine-tuning: every backbone parameter trains.
_base_ = ['../_base_/cascade_swin_b_coco.py', './_base_/method.py']
model = dict(backbone=_base_.method)
