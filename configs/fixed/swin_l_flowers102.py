# Fixed, Swin-L (ImageNet-22k), Oxford 102 Flowers.
# Recipe: ../_base_/swin_l_classification.py; method: ./_base_/method.py.
_base_ = ['../_base_/swin_l_flowers102.py', './_base_/method.py']
model = dict(backbone=_base_.method)
