# Fixed: the backbone is frozen; neck and head train.
_base_ = ['../_base_/retinanet_swin_l_voc.py']
model = dict(backbone=dict(adapter=None, tuning='fixed'))
