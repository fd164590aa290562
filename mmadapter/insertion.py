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
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Type

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from mmadapter.adapters.base import (
    SITES,
    AdapterConfigError,
    AdapterModule,
    AdapterSpec,
)
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
        h = sites.transform('attn_branch', h, hw_shape)
        x = x + self.attn_drop_path(h)
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


class AdapterSetError(AdapterConfigError):
    """A request about named adapter sets that cannot be carried out."""


class BlockAdapters:
    """The modules one adapter set puts into one block: site modules, and
    the replacements (LoRA wrappers) of Linear layers, by layer name."""

    def __init__(self, sites: AdapterSites, linears: Dict[str, nn.Module],
                 linear_paths: Dict[str, str]):
        self.sites = sites
        self.linears = linears
        self.linear_paths = linear_paths

    def owned_modules(self) -> List[nn.Module]:
        """Modules holding exactly this set's tensors: the sites, and the
        children of the Linear wrappers (whose own weight and bias are the
        shared frozen ones)."""
        return [self.sites] + [child for wrapper in self.linears.values()
                               for child in wrapper.children()]

    def state_dict(self, block_path: str, destination: OrderedDict,
                   keep_vars: bool = False) -> OrderedDict:
        """This set's entries, under the keys they have in the backbone's
        state dict while the set is active."""
        self.sites.state_dict(destination=destination,
                              prefix=f'{block_path}.adapters.',
                              keep_vars=keep_vars)
        for name, wrapper in self.linears.items():
            for child_name, child in wrapper.named_children():
                child.state_dict(
                    destination=destination, keep_vars=keep_vars,
                    prefix=f'{block_path}.{self.linear_paths[name]}.'
                    f'{child_name}.')
        return destination


class AdapterSet:
    """One named adapter set over a whole backbone: the spec that built it
    and its :class:`BlockAdapters` by block path."""

    def __init__(self, name: str, spec: AdapterSpec,
                 blocks: Dict[str, BlockAdapters]):
        self.name = name
        self.spec = spec
        self.blocks = blocks

    def owned_modules(self) -> List[nn.Module]:
        return [m for block in self.blocks.values()
                for m in block.owned_modules()]

    def parameters(self) -> List[nn.Parameter]:
        return [p for m in self.owned_modules() for p in m.parameters()]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def merged(self) -> bool:
        """Whether any of its Linear wrappers has its update folded into
        the shared frozen weight (LoRA's ``merge``)."""
        return any(getattr(wrapper, 'merged', False)
                   for block in self.blocks.values()
                   for wrapper in block.linears.values())

    def state_dict(self, keep_vars: bool = False) -> OrderedDict:
        """The set's tensors, keyed as in the backbone's state dict while it
        is active (the keys of the single-set model it was trained as)."""
        out = OrderedDict()
        for path, block in self.blocks.items():
            block.state_dict(path, out, keep_vars)
        return out

    def check_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Raise unless ``state`` has exactly this set's keys and shapes."""
        own = self.state_dict(keep_vars=True)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        shapes = [f'{k} {tuple(state[k].shape)} vs {tuple(v.shape)}'
                  for k, v in own.items()
                  if k in state and state[k].shape != v.shape]
        if missing or unexpected or shapes:
            problems = [f'{label} ({len(keys)}): {", ".join(keys[:4])}'
                        for label, keys in (('missing', missing),
                                            ('unexpected', unexpected),
                                            ('other shapes', shapes))
                        if keys]
            raise AdapterSetError(
                f'The tensors given for adapter set {self.name!r} '
                f'({type(self.spec).__name__}) do not fit this backbone: '
                f'{"; ".join(problems)}. They were trained on a backbone of '
                'another shape (width, depth) or with other adapter options.')

    @torch.no_grad()
    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Copy ``state`` (keys as :meth:`state_dict`) into the set; checked
        whole before anything is copied."""
        self.check_state_dict(state)
        for key, tensor in self.state_dict(keep_vars=True).items():
            tensor.copy_(state[key])


def prepare_block(block: nn.Module,
                  adapted_cls: Type[AdaptedBlockMixin]) -> nn.Module:
    """Turn a stock block into ``adapted_cls`` in place, with no adapter
    yet (it computes what the stock block computes). Stock parameters keep
    their names."""
    if isinstance(block, adapted_cls):
        return block
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
    block.adapters = AdapterSites()
    # the stock Linear layers and where they sit, kept outside the module
    # tree: every set wraps these (LoRA), a set without a wrapper for a
    # layer runs it as is
    block.stock_linears = {name: block.get_submodule(path)
                           for name, path in adapted_cls.linear_paths.items()}
    block.linear_slots = {}
    for name, path in adapted_cls.linear_paths.items():
        parent_path, _, attr = path.rpartition('.')
        block.linear_slots[name] = (block.get_submodule(parent_path), attr)
    return block


def build_block_adapters(block: nn.Module, spec: AdapterSpec,
                         embed_dims: int) -> BlockAdapters:
    """The modules of ``spec`` for a prepared block (not installed)."""
    modules = spec.site_modules(embed_dims)
    for site in modules:
        assert site in SITES, site
    linears, paths = _wrap_linears(block, spec)
    return BlockAdapters(AdapterSites(modules), linears, paths)


def install_block_adapters(block: nn.Module,
                           adapters: Optional[BlockAdapters]) -> None:
    """Make ``adapters`` (None: no adapter) the ones ``block`` runs: a few
    attribute assignments, no tensor is touched or copied."""
    sites = adapters.sites if adapters is not None else AdapterSites()
    block.adapters = _in_mode(sites, block.training)
    wrappers = adapters.linears if adapters is not None else {}
    for name, (parent, attr) in block.linear_slots.items():
        current = getattr(parent, attr)
        new = wrappers.get(name, block.stock_linears[name])
        if new is current:
            continue
        # every wrapper holds the frozen weight the tree holds now (also
        # after a conversion that replaced the Parameter objects)
        for param in ('weight', 'bias'):
            if getattr(new, param) is not getattr(current, param):
                setattr(new, param, getattr(current, param))
        setattr(parent, attr, _in_mode(new, block.training))


def _in_mode(module: nn.Module, training: bool) -> nn.Module:
    """``module`` in train or eval mode (``train()`` sets the whole
    subtree, so the top module's flag tells)."""
    return module if module.training == training else module.train(training)


def adapt_block(block: nn.Module, adapted_cls: Type[AdaptedBlockMixin],
                spec: AdapterSpec, embed_dims: int) -> nn.Module:
    """Turn a stock block into ``adapted_cls`` in place and insert the
    adapter modules of ``spec``. Stock parameters keep their names."""
    prepare_block(block, adapted_cls)
    install_block_adapters(block, build_block_adapters(block, spec,
                                                       embed_dims))
    return block


def linear_slices(name: str, linear: nn.Linear) -> Dict[str, slice]:
    """The named output slices of a block's Linear layer: q/k/v for the
    fused qkv projection, the whole output otherwise."""
    if name == 'qkv':
        dims = linear.out_features // 3
        return {t: slice(i * dims, (i + 1) * dims)
                for i, t in enumerate(('q', 'k', 'v'))}
    return {name: slice(0, linear.out_features)}


def _wrap_linears(block: nn.Module, spec: AdapterSpec
                  ) -> Tuple[Dict[str, nn.Module], Dict[str, str]]:
    """Wrappers of the block's stock Linear layers that ``spec`` targets,
    and their paths in the block, by layer name."""
    wanted = set(spec.linear_targets)
    wrappers, paths = {}, {}
    if not wanted:
        return wrappers, paths
    covered = set()
    for name, path in type(block).linear_paths.items():
        linear = block.stock_linears[name]
        slices = {t: s for t, s in linear_slices(name, linear).items()
                  if t in wanted}
        if slices:
            wrappers[name] = spec.wrap_linear(linear, slices)
            paths[name] = path
            covered.update(slices)
    missing = wanted - covered
    if missing:
        raise AdapterConfigError(
            f'{type(spec).__name__} targets {sorted(missing)} match no '
            f'Linear layer of {type(block).__name__}; it has '
            f'{sorted(type(block).linear_paths)} (qkv holds q, k, v).')
    return wrappers, paths


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
