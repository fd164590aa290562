# Mona: two Mona modules per encoder layer (bottleneck 64) after the
# attention and MLP residuals; only they train in the backbone. The class
# token takes Mona's token-wise path, the patch tokens also its convs.
_base_ = ['./_base_/retinanet_vit_b16_voc.py']
model = dict(
    backbone=dict(
        adapter=dict(type='Mona', bottleneck=64), tuning='adapter'))
