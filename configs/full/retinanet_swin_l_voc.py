# Full fine-tuning: every backbone parameter trains.
_base_ = ['../_base_/retinanet_swin_l_voc.py']
model = dict(backbone=dict(adapter=None, tuning='full'))
