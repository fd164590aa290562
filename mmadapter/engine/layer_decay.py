"""Layer-wise learning-rate decay for detectors and segmentors with a ViT
backbone.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the model it
is given for ``get_layer_depth``, which only classifiers have; mmseg's
constructor recognises backbones by class name (BEiT, MAE, ConvNeXt). This
one takes the depths from ``model.backbone.get_layer_depth`` (mmpretrain's
ViT, and so AdapterViT: patch embedding 0, layer i at i + 1, the rest of
the model at the top) and otherwise behaves as mmpretrain's.
"""
from functools import partial

from mmpretrain.engine.optimizers import (
    LearningRateDecayOptimWrapperConstructor,
)

from mmadapter.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class BackboneLayerDecayOptimWrapperConstructor(
        LearningRateDecayOptimWrapperConstructor):
    """``paramwise_cfg=dict(layer_decay_rate=0.65, ...)``: the lr of a
    parameter at depth d of D is ``lr * rate ** (D - 1 - d)``. Frozen
    parameters are left out of the optimizer."""

    def add_params(self, params, module, prefix='', get_layer_depth=None,
                   **kwargs):
        if get_layer_depth is None and prefix == '' \
                and not hasattr(module, 'get_layer_depth'):
            backbone = getattr(module, 'backbone', None)
            if backbone is None or not hasattr(backbone, 'get_layer_depth'):
                raise TypeError(
                    f'{type(self).__name__} needs a model whose backbone has '
                    f'get_layer_depth (ViT backbones such as AdapterViT); '
                    f'{type(module).__name__}.backbone is '
                    f'{type(backbone).__name__}. Use the default optimizer '
                    'wrapper constructor for this model.')
            get_layer_depth = partial(backbone.get_layer_depth,
                                      prefix='backbone.')
        super().add_params(params, module, prefix=prefix,
                           get_layer_depth=get_layer_depth, **kwargs)
