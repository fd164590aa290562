# Full fine-tuning: every backbone parameter trains.
_base_ = ['../_base_/cascade_swin_b_coco.py']
model = dict(backbone=dict(adapter=None, tuning='full'))
