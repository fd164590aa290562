# Mona: two Mona modules per block (bottleneck 64) after the attention
# and MLP residuals; only they train in the backbone.
# On ADE20K Mona trains with lr 3e-4 and drop path 0.2 (the baselines use
# 6e-5 and 0.3), and its official config adds the custom key 'backbone':
# the longest matching key wins, so Mona's own LayerNorms get the weight
# decay 0.01 ('norm' no longer exempts backbone parameters; the position
# tables keep decay 0).
_base_ = ['../_base_/upernet_swin_l_ade20k.py', './_base_/method.py']
model = dict(backbone=dict(**_base_.method, drop_path_rate=0.2))
optim_wrapper = dict(
    optimizer=dict(lr=3e-4),
    paramwise_cfg=dict(custom_keys={'backbone': dict(lr_mult=1.0)}))
