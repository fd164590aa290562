# Full fine-tuning: every backbone parameter trains, with layer-wise lr
# decay available: a parameter at depth d (patch and position embeddings 0,
# encoder layer k at k + 1, final norm, neck and heads 13) trains with
# lr * layer_decay_rate ** (13 - d). 1.0 keeps the Swin recipe (no decay);
# ViT fine-tuning recipes use about 0.65 (BEiT, MAE) to 0.7 (ViTDet).
_base_ = ['./_base_/retinanet_vit_b16_voc.py']
model = dict(backbone=dict(adapter=None, tuning='full'))

layer_decay_rate = 1.0
optim_wrapper = dict(
    constructor='mmadapter.BackboneLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=layer_decay_rate))
