# BitFit: only backbone parameters named *bias* train (this includes
# relative_position_bias_table).
_base_ = ['../_base_/cascade_swin_b_coco.py']
model = dict(backbone=dict(adapter=None, tuning='bitfit'))
