"""AdaptFormer (Chen et al., NeurIPS 2022): a scaled bottleneck branch in
parallel with the MLP, fed by the post-attention residual stream."""
from typing import Dict

from mmadapter.registry import ADAPTERS
from .base import (
    AdapterConfigError,
    AdapterModule,
    AdapterSpec,
    build_activation,
    check_choice,
    check_float,
    check_impl,
    check_int,
    with_impl,
)
from .bottleneck import BOTTLENECK_INITS, BottleneckAdapter


@ADAPTERS.register_module()
class AdaptFormer(AdapterSpec):
    """AdaptFormer config.

    Args:
        bottleneck: hidden width (64 in the tables).
        dropout: dropout after the activation (0.1).
        scale: fixed branch scale (0.1), or 'learnable' for a learnable
            scalar (an option of the original code).
        activation: 'gelu' (the Mona code's re-implementation that produced
            the tables, default) or 'relu' (the original AdaptFormer).
        init: 'trunc_normal' (default: both projections trunc_normal std
            0.02, biases 0, as the Mona code re-initialises every Linear, so
            the table runs started with a non-zero up projection), 'lora'
            (the original AdaptFormer: zero up projection, so the adapted
            model starts exactly at the base model) or 'houlsby'.
        impl: 'auto' (default), 'plain', 'fused' or 'compiled': which path
            runs (docs/fast_paths.md).
    """

    def __init__(self, bottleneck: int = 64, dropout: float = 0.1,
                 scale=0.1, activation: str = 'gelu',
                 init: str = 'trunc_normal', impl: str = 'auto'):
        self.bottleneck = check_int('AdaptFormer', 'bottleneck', bottleneck)
        self.dropout = check_float('AdaptFormer', 'dropout', dropout, 0.0,
                                   1.0, high_inclusive=False)
        if scale != 'learnable':
            try:
                scale = check_float('AdaptFormer', 'scale', scale)
            except AdapterConfigError:
                raise AdapterConfigError(
                    "AdaptFormer: scale must be a non-negative number or "
                    f"'learnable', got {scale!r}.") from None
        self.scale = scale
        build_activation('AdaptFormer', activation)
        self.activation = activation
        self.init = check_choice('AdaptFormer', 'init', init,
                                 BOTTLENECK_INITS)
        self.impl = check_impl('AdaptFormer', impl)

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        learnable = self.scale == 'learnable'
        return with_impl(self.impl, {
            'ffn_parallel':
            BottleneckAdapter(embed_dims, self.bottleneck, self.activation,
                              self.dropout, skip=False,
                              scale=1.0 if learnable else self.scale,
                              learnable_scale=learnable, init=self.init)
        })
