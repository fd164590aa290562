# Mona: two Mona modules per block (bottleneck 64) after the attention
# and MLP residuals; only they train in the backbone.
# On ADE20K Mona trains with lr 3e-4 and drop path 0.2 (the baselines use
# 6e-5 and 0.3).
_base_ = ['../_base_/upernet_swin_l_ade20k.py']
model = dict(
    backbone=dict(
        adapter=dict(type='Mona', bottleneck=64),
        tuning='adapter',
        drop_path_rate=0.2))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
