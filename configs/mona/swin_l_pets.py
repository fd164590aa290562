# Mona, Swin-L (ImageNet-22k), Oxford-IIIT Pet.
# Recipe: ../_base_/swin_l_classification.py; method: ./_base_/method.py.
# Mona trains with twice the base lr on Flowers102 and Pets (not on VOC).
_base_ = ['../_base_/swin_l_pets.py', './_base_/method.py']
model = dict(backbone=_base_.method)
optim_wrapper = dict(optimizer=dict(lr=2 * _base_.base_lr))
