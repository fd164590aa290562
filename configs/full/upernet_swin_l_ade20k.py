# Full fine-tuning: every backbone parameter trains.
_base_ = ['../_base_/upernet_swin_l_ade20k.py']
model = dict(backbone=dict(adapter=None, tuning='full'))
