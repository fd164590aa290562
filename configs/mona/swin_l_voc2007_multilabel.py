# Mona on Pascal VOC2007 with the standard MULTI-label protocol (sigmoid
# cross-entropy, VOC mAP); the paper's table is single-label:
# ./swin_l_voc2007.py.
_base_ = ['../_base_/swin_l_voc2007_multilabel.py', './_base_/method.py']
model = dict(backbone=_base_.method)
