# Mona: two Mona modules per encoder layer (bottleneck 64) after the
# attention and MLP residuals; only they train in the backbone. The class
# token takes Mona's token-wise path, the patch tokens also its convs.
_base_ = ['./_base_/upernet_vit_b16_ade20k.py']
model = dict(
    backbone=dict(
        adapter=dict(type='Mona', bottleneck=64), tuning='adapter'))
# As in the Swin ADE20K setting, Mona trains with lr 3e-4 (the others 6e-5).
optim_wrapper = dict(optimizer=dict(lr=3e-4))
