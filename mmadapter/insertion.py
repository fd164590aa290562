"""The one mechanism that puts adapters into transformer blocks.

Every backbone turns its stock blocks into adapted blocks with
:func:`adapt_block`; every method only says which modules go to which site
(:class:`~mmadapter.adapters.AdapterSpec`). An adapted block runs::

    h = attn(norm1(x))                     # branch output, before drop path
    x = x + drop_path(attn_branch(h))
    x = post_attn(x)
    h = ffn(norm2(x))
    x = x + drop_path(ffn_branch(h)) + ffn_parallel(x)
    x = post_ffn(x)

where an empty site is the identity (or adds nothing, for ``ffn_parallel``).
To get the branch outputs before drop path, the stock drop-path modules are
moved from the attention and FFN modules to the block; they hold no weights,
so state-dict keys do not change.
"""
from typing import Dict, Tuple, Type

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from mmadapter.adapters.base import (SITES, AdapterConfigError, AdapterModule,
                                     AdapterSpec)
from mmadapter.adapters.lora import LoRALinear


class AdapterSites(nn.ModuleDict):
    """The adapter modules of one block, keyed by site name."""

    def transform(self, site: str, x: torch.Tensor, hw_shape) -> torch.Tensor:
        return self[site](x, hw_shape) if site in self else x

    def branch(self, site: str, x: torch.Tensor, hw_shape):
        return self[site](x, hw_shape) if site in self else None


class AdaptedBlockMixin:
    """Adapted forward pass shared by all backbones.

    A backbone's adapted block class derives from this mixin and from its
    stock block class, and says how to call the attention
    (:meth:`attention_branch`) and where the stock drop-path module of the
    attention lives (:attr:`attn_drop_path_attr`). ``norm1``, ``norm2`` and an
    mmcv ``FFN`` at ``ffn`` are common to mmdet's Swin and mmpretrain's ViT.
    """

    #: Attribute of ``self.attn`` that holds its DropPath.
    attn_drop_path_attr: str = ''
    #: Linear layers by name, as paths relative to the block, with the
    #: output slices they hold (see :func:`linear_slices`).
    linear_paths: Dict[str, str] = {}

    def attention_branch(self, x: torch.Tensor, hw_shape) -> torch.Tensor:
        raise NotImplementedError

    def adapted_forward(self, x: torch.Tensor, hw_shape) -> torch.Tensor:
        sites: AdapterSites = self.adapters
        h = self.attention_branch(self.norm1(x), hw_shape)
        x = x + self.attn_drop_path(sites.transform('attn_branch', h, hw_shape))
        x = sites.transform('post_attn', x, hw_shape)
        h = sites.transform('ffn_branch', self.ffn(self.norm2(x)), hw_shape)
        out = x + self.ffn_drop_path(h)
        parallel = sites.branch('ffn_parallel', x, hw_shape)
        if parallel is not None:
            out = out + parallel
        return sites.transform('post_ffn', out, hw_shape)

    def checkpointed_forward(self, x: torch.Tensor, hw_shape) -> torch.Tensor:
        """``adapted_forward``, under gradient checkpointing when asked.

        Unlike the stock blocks this also checkpoints when ``x`` needs no
        gradient (a frozen stem) but the block's adapters do: the
        non-reentrant checkpoint handles parameter-only gradients.
        """
        if self.with_cp and torch.is_grad_enabled() and self.training:
            return cp.checkpoint(self.adapted_forward, x, hw_shape,
                                 use_reentrant=False)
        return self.adapted_forward(x, hw_shape)


def adapt_block(block: nn.Module, adapted_cls: Type[AdaptedBlockMixin],
                spec: AdapterSpec, embed_dims: int) -> nn.Module:
    """Turn a stock block into ``adapted_cls`` in place and insert the
    adapter modules of ``spec``. Stock parameters keep their names."""
    if not (isinstance(adapted_cls, type)
            and issubclass(adapted_cls, type(block))):
        raise TypeError(f'{adapted_cls.__name__} must subclass '
                        f'{type(block).__name__}')
    # The adapted class adds behaviour only (no new constructor state), so
    # switching the class of the built block keeps every stock weight.
    block.__class__ = adapted_cls
    attn_drop = getattr(block.attn, adapted_cls.attn_drop_path_attr)
    setattr(block.attn, adapted_cls.attn_drop_path_attr, nn.Identity())
    block.attn_drop_path = attn_drop
    block.ffn_drop_path = block.ffn.dropout_layer
    block.ffn.dropout_layer = nn.Identity()
    block.ffn.add_identity = False

    modules = spec.site_modules(embed_dims)
    for site in modules:
        assert site in SITES, site
    block.adapters = AdapterSites(modules)
    _wrap_linears(block, spec, adapted_cls.linear_paths)
    return block


def linear_slices(name: str, linear: nn.Linear) -> Dict[str, slice]:
    """The named output slices of a block's Linear layer: q/k/v for the
    fused qkv projection, the whole output otherwise."""
    if name == 'qkv':
        dims = linear.out_features // 3
        return {t: slice(i * dims, (i + 1) * dims)
                for i, t in enumerate(('q', 'k', 'v'))}
    return {name: slice(0, linear.out_features)}


def _wrap_linears(block: nn.Module, spec: AdapterSpec,
                  linear_paths: Dict[str, str]) -> None:
    wanted = set(spec.linear_targets)
    if not wanted:
        return
    covered = set()
    for name, path in linear_paths.items():
        parent_path, _, attr = path.rpartition('.')
        parent = block.get_submodule(parent_path)
        linear = getattr(parent, attr)
        slices = {t: s for t, s in linear_slices(name, linear).items()
                  if t in wanted}
        if slices:
            setattr(parent, attr, spec.wrap_linear(linear, slices))
            covered.update(slices)
    missing = wanted - covered
    if missing:
        raise AdapterConfigError(
            f'{type(spec).__name__} targets {sorted(missing)} match no '
            f'Linear layer of {type(block).__name__}; it has '
            f'{sorted(linear_paths)} (qkv holds q, k, v).')


def adapter_parameter_names(model: nn.Module) -> Tuple[str, ...]:
    """Names of the parameters that belong to adapter modules."""
    names = {}
    for prefix, module in model.named_modules():
        if isinstance(module, AdapterModule):
            names.update((f'{prefix}.{n}' if prefix else n, None)
                         for n, _ in module.named_parameters())
    return tuple(names)


def reset_adapters(model: nn.Module) -> None:
    """Re-initialise every adapter module as its method specifies.

    Backbone ``init_weights`` re-initialises every ``nn.Linear`` it holds;
    this undoes that for adapters (AdaptFormer's zero up projection...).
    """
    for module in model.modules():
        if isinstance(module, AdapterModule):
            module.reset_parameters()


def iter_lora_layers(model: nn.Module):
    return (m for m in model.modules() if isinstance(m, LoRALinear))


def merge_lora(model: nn.Module, unmerge: bool = False) -> int:
    """Fold (or with ``unmerge=True`` take out) every LoRA update of
    ``model``; returns the number of layers touched."""
    layers = list(iter_lora_layers(model))
    for layer in layers:
        if unmerge:
            layer.unmerge()
        else:
            layer.merge()
    return len(layers)
