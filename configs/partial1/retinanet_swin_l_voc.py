# Partial-1: only the last block of the last stage trains.
_base_ = ['../_base_/retinanet_swin_l_voc.py']
model = dict(backbone=dict(adapter=None, tuning='partial-1'))
