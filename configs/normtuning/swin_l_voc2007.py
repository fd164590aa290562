# NormTuning, Swin-L (ImageNet-22k), VOC2007 (single-label).
# Recipe: ../_base_/swin_l_classification.py; method: ./_base_/method.py.
_base_ = ['../_base_/swin_l_voc2007.py', './_base_/method.py']
model = dict(backbone=_base_.method)
