# BitFit: only backbone parameters named *bias* train (this includes
# relative_position_bias_table).
_base_ = ['../_base_/upernet_swin_l_ade20k.py', './_base_/method.py']
model = dict(backbone=_base_.method)
