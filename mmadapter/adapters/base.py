"""What every adapter method shares: the insertion sites, the module marker and
the method interface.

A method is a small *spec* object built from the ``adapter=dict(type=...)``
config. It validates its options once and then, for every transformer block,
says which modules go where:

* :meth:`AdapterSpec.site_modules` returns modules keyed by insertion site;
* :meth:`AdapterSpec.wrap_linear` replaces chosen Linear layers (LoRA).

The block code (:mod:`mmadapter.insertion`) is the only place that knows how
a site is wired into the forward pass, for every method and every backbone.

Every adapter module's ``forward`` reads as its method in stock PyTorch
operations; the faster paths of :mod:`mmadapter.ops` sit beside it, chosen
by the ``impl`` option (:class:`~mmadapter.ops.FastPaths`).
"""
import inspect
from typing import Dict, Optional, Tuple

import torch.nn as nn

from mmadapter.ops import IMPLS, FastPaths
from mmadapter.registry import ADAPTERS

#: Where an adapter can sit in a pre-norm transformer block.
#:
#: ``x = x + drop_path(attn_branch(attn(norm1(x))))``; ``x = post_attn(x)``;
#: ``x = x + drop_path(ffn_branch(ffn(norm2(x)))) + ffn_parallel(x)``;
#: ``x = post_ffn(x)``.
SITES: Tuple[str, ...] = ('attn_branch', 'post_attn', 'ffn_parallel',
                          'ffn_branch', 'post_ffn')

#: Linear layers of a block that a method may wrap. ``q``, ``k`` and ``v`` are
#: the slices of the fused qkv projection.
LINEAR_TARGETS: Tuple[str, ...] = ('q', 'k', 'v', 'proj', 'fc1', 'fc2')


class AdapterConfigError(ValueError):
    """An adapter or tuning config that cannot be built as written."""


class AdapterModule(FastPaths, nn.Module):
    """Marks a module whose parameters belong to an adapter.

    The ``adapter`` tuning policy trains exactly the parameters of these
    modules, and adapter-only checkpoints hold exactly them.

    Subclasses take ``(x, hw_shape)`` in ``forward``: ``x`` is (B, N, C) and
    ``hw_shape`` the (H, W) of the patch grid. When N > H * W the first
    N - H * W tokens are non-patch tokens (class token, registers).
    ``impl`` picks the path (:class:`~mmadapter.ops.FastPaths`).
    """

    def reset_parameters(self) -> None:
        """Re-initialise as the method specifies (after backbone init)."""
        raise NotImplementedError


class AdapterSpec:
    """Validated options of one adapter method (base class).

    Subclasses are registered in :data:`mmadapter.registry.ADAPTERS` and
    override :meth:`site_modules` and/or :meth:`wrap_linear`.
    """

    #: Linear targets the method wraps (LoRA); empty for site-based methods.
    linear_targets: Tuple[str, ...] = ()
    #: Which path the modules run ('auto', 'plain', 'fused', 'compiled').
    impl: str = 'auto'

    def site_modules(self, embed_dims: int) -> Dict[str, AdapterModule]:
        """Modules for one block of width ``embed_dims``, keyed by site."""
        return {}

    def wrap_linear(self, linear: nn.Linear,
                    slices: Dict[str, slice]) -> nn.Module:
        """Return a replacement for ``linear`` that adapts ``slices``.

        ``slices`` maps the names in :attr:`linear_targets` that this layer
        holds to their output rows (``{'q': slice(0, C), 'v': slice(2C, 3C)}``
        for a fused qkv layer, ``{'fc1': slice(0, 4C)}``...).
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        opts = ', '.join(f'{k}={v!r}' for k, v in vars(self).items())
        return f'{type(self).__name__}({opts})'


def build_adapter(cfg) -> Optional[AdapterSpec]:
    """Build an adapter spec from ``dict(type=..., **options)`` (or None).

    Errors name the problem and the fix: an unknown type lists the known
    ones, an unknown option lists the valid options of that method.
    """
    if cfg is None or isinstance(cfg, AdapterSpec):
        return cfg
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise AdapterConfigError(
            f'adapter must be None or a dict with a "type" key, got {cfg!r}. '
            f'Known adapter types: {", ".join(known_adapters())}.')
    cfg = dict(cfg)
    type_name = cfg.pop('type')
    if isinstance(type_name, str) and type_name.startswith('mmadapter.'):
        type_name = type_name[len('mmadapter.'):]
    spec_cls = ADAPTERS.get(type_name) if isinstance(type_name, str) else None
    if spec_cls is None:
        raise AdapterConfigError(
            f'Unknown adapter type {type_name!r}. Known adapter types: '
            f'{", ".join(known_adapters())}.')
    params = inspect.signature(spec_cls.__init__).parameters
    valid = [p for p in params if p != 'self']
    unknown = sorted(set(cfg) - set(valid))
    if unknown:
        raise AdapterConfigError(
            f'{type_name} adapter got unknown option(s) {unknown}; valid '
            f'options are: {", ".join(valid)}.')
    return spec_cls(**cfg)


def known_adapters():
    return sorted(ADAPTERS.module_dict)


# --- option checks shared by the specs -------------------------------------

def check_int(method: str, name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) \
            or value < minimum:
        raise AdapterConfigError(
            f'{method}: {name} must be an integer >= {minimum}, '
            f'got {value!r}.')
    return value


def check_float(method: str, name: str, value, low: float = 0.0,
                high: float = float('inf'),
                high_inclusive: bool = True) -> float:
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    in_range = ok_type and low <= value and (
        value <= high if high_inclusive else value < high)
    if not in_range:
        bound = ']' if high_inclusive else ')'
        raise AdapterConfigError(
            f'{method}: {name} must be a number in [{low}, {high}{bound}, '
            f'got {value!r}.')
    return float(value)


def check_choice(method: str, name: str, value, choices) -> str:
    if value not in choices:
        raise AdapterConfigError(
            f'{method}: {name} must be one of {list(choices)}, got {value!r}.')
    return value


def check_impl(method: str, impl) -> str:
    if impl not in IMPLS:
        raise AdapterConfigError(
            f'{method}: impl must be one of {list(IMPLS)}, got {impl!r}. '
            "'auto' takes per device the path a recorded measurement shows "
            "best; 'plain' the readable forward, 'fused' the hand-written "
            "autograd functions, 'compiled' torch.compile of the readable "
            'forward (docs/fast_paths.md).')
    return impl


def with_impl(impl: str, modules: Dict[str, AdapterModule]
              ) -> Dict[str, AdapterModule]:
    """``modules``, each set to run ``impl``."""
    for module in modules.values():
        module.set_impl(impl)
    return modules


def set_adapter_impl(model: nn.Module, impl: str) -> int:
    """Set every adapter module and LoRA layer under ``model`` to run
    ``impl``; returns how many were set."""
    check_impl('set_adapter_impl', impl)
    modules = [m for m in model.modules() if isinstance(m, FastPaths)]
    for module in modules:
        module.set_impl(impl)
    return len(modules)


def check_sites(method: str, sites) -> Tuple[str, ...]:
    if isinstance(sites, str):
        sites = (sites, )
    sites = tuple(sites)
    if not sites:
        raise AdapterConfigError(f'{method}: sites must name at least one '
                                 f'site out of {list(SITES)}.')
    for site in sites:
        check_choice(method, 'sites', site, SITES)
    if len(set(sites)) != len(sites):
        raise AdapterConfigError(f'{method}: sites has duplicates: {sites}.')
    return sites


ACTIVATIONS = {'gelu': nn.GELU, 'relu': nn.ReLU, 'silu': nn.SiLU}


def build_activation(method: str, name: str) -> nn.Module:
    check_choice(method, 'activation', name, ACTIVATIONS)
    return ACTIVATIONS[name]()
