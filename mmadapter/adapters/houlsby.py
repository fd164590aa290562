"""The Houlsby adapter ("Adapter" in the Mona tables): a bottleneck with its
own skip on the attention and MLP branch outputs, before the residual add."""
from typing import Dict, Sequence

from mmadapter.registry import ADAPTERS
from .base import (
    AdapterModule,
    AdapterSpec,
    build_activation,
    check_choice,
    check_float,
    check_impl,
    check_int,
    check_sites,
    with_impl,
)
from .bottleneck import BOTTLENECK_INITS, BottleneckAdapter


@ADAPTERS.register_module()
class Houlsby(AdapterSpec):
    """Houlsby adapter config.

    Args:
        bottleneck: hidden width (64 in the tables).
        dropout: dropout after the activation (0.1).
        activation: 'gelu' (default), 'relu' or 'silu'.
        init: 'trunc_normal' (the Mona code, default), 'houlsby'
            (near-identity) or 'lora' (exact identity).
        sites: ('attn_branch', 'ffn_branch') as in the paper.
        impl: 'auto' (default), 'plain', 'fused' or 'compiled': which path
            runs (docs/fast_paths.md).
    """

    def __init__(self, bottleneck: int = 64, dropout: float = 0.1,
                 activation: str = 'gelu', init: str = 'trunc_normal',
                 sites: Sequence[str] = ('attn_branch', 'ffn_branch'),
                 impl: str = 'auto'):
        self.bottleneck = check_int('Houlsby', 'bottleneck', bottleneck)
        self.dropout = check_float('Houlsby', 'dropout', dropout, 0.0, 1.0,
                                   high_inclusive=False)
        build_activation('Houlsby', activation)
        self.activation = activation
        self.init = check_choice('Houlsby', 'init', init, BOTTLENECK_INITS)
        self.sites = check_sites('Houlsby', sites)
        self.impl = check_impl('Houlsby', impl)

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        return with_impl(self.impl, {
            site: BottleneckAdapter(embed_dims, self.bottleneck,
                                    self.activation, self.dropout, skip=True,
                                    init=self.init)
            for site in self.sites
        })
