"""Which backbone parameters train: the tuning policies, in one place.

A policy is a string (or ``dict(type=...)``):

=================  ======================================================
``full``           every parameter trains (default without an adapter)
``fixed``          nothing trains (the backbone is frozen)
``bitfit``         parameters whose name contains ``bias`` (this includes
                   Swin's ``relative_position_bias_table``)
``norm``           parameters of normalisation layers (LayerNorm,
                   BatchNorm, GroupNorm, InstanceNorm; named ``norm*`` in
                   Swin, ``ln*`` in ViT), the NormTuning baseline
``partial-N``      the last N transformer blocks (Partial-1: N = 1)
``adapter``        only adapter parameters (default with an adapter)
=================  ======================================================

Backbones apply their policy at construction and again after every weight
loading (``init_weights``), so runners, tools and optimizers all see it.
"""
import re
from typing import Callable, Dict, List, Sequence

import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from mmadapter.adapters.base import AdapterConfigError
from mmadapter.insertion import adapter_parameter_names

POLICIES = ('full', 'fixed', 'bitfit', 'norm', 'partial-N', 'adapter')
_PARTIAL = re.compile(r'^partial-(\d+)$')


def normalize_policy(policy, has_adapter: bool) -> str:
    """Validate ``policy`` and return its canonical string form."""
    if policy is None:
        return 'adapter' if has_adapter else 'full'
    if isinstance(policy, dict):
        policy = dict(policy)
        name = policy.pop('type', None)
        if name == 'partial' and set(policy) <= {'num_blocks'}:
            policy = f"partial-{policy.get('num_blocks', 1)}"
        elif not policy:
            policy = name
        else:
            raise AdapterConfigError(
                f'Tuning policy dict {dict(type=name, **policy)!r} is not '
                "understood; use a string such as 'adapter' or 'partial-1', "
                "or dict(type='partial', num_blocks=N).")
    if not isinstance(policy, str):
        raise AdapterConfigError(
            f'tuning must be a string, got {policy!r}. Valid policies: '
            f'{", ".join(POLICIES)}.')
    policy = policy.lower().replace('_', '-')
    aliases = {'frozen': 'fixed', 'normtuning': 'norm', 'adapters': 'adapter',
               'adapter-only': 'adapter', 'adapters-only': 'adapter',
               'partial': 'partial-1', 'partial1': 'partial-1'}
    policy = aliases.get(policy, policy)
    match = _PARTIAL.match(policy)
    if match and int(match.group(1)) < 1:
        raise AdapterConfigError(
            f'partial-N needs N >= 1, got {policy!r}.')
    if policy not in POLICIES and not match:
        raise AdapterConfigError(
            f'Unknown tuning policy {policy!r}. Valid policies: '
            f'{", ".join(POLICIES)} (e.g. partial-1).')
    if policy == 'adapter' and not has_adapter:
        raise AdapterConfigError(
            "tuning='adapter' trains only adapter parameters, but no adapter "
            "is configured: set adapter=dict(type=...) or choose another "
            f'policy ({", ".join(POLICIES)}).')
    return policy


def trainable_names(model: nn.Module, policy: str,
                    block_prefixes: Sequence[str]) -> List[str]:
    """Names of the parameters of ``model`` that ``policy`` trains.

    ``block_prefixes`` lists the module paths of the transformer blocks in
    forward order (for ``partial-N``).
    """
    names = [n for n, _ in model.named_parameters()]
    match = _PARTIAL.match(policy)
    if match:
        n_blocks = int(match.group(1))
        if n_blocks > len(block_prefixes):
            raise AdapterConfigError(
                f'{policy} asks for the last {n_blocks} blocks, but the '
                f'backbone has {len(block_prefixes)}.')
        last = tuple(p + '.' for p in block_prefixes[-n_blocks:])
        return [n for n in names if n.startswith(last)]
    selectors: Dict[str, Callable[[str], bool]] = {
        'full': lambda n: True,
        'fixed': lambda n: False,
        'bitfit': lambda n: 'bias' in n,
    }
    if policy == 'adapter':
        adapter = set(adapter_parameter_names(model))
        return [n for n in names if n in adapter]
    if policy == 'norm':
        norm = set(norm_parameter_names(model))
        return [n for n in names if n in norm]
    return [n for n in names if selectors[policy](n)]


NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm, _BatchNorm, _InstanceNorm)


def norm_parameter_names(model: nn.Module) -> List[str]:
    """Names of the parameters of normalisation layers, by layer type
    (names differ between backbones: ``norm1`` in Swin, ``ln1`` in ViT)."""
    return [f'{prefix}.{n}' if prefix else n
            for prefix, module in model.named_modules()
            if isinstance(module, NORM_LAYERS)
            for n, _ in module.named_parameters(recurse=False)]


def apply_policy(model: nn.Module, policy: str,
                 block_prefixes: Sequence[str]) -> int:
    """Set ``requires_grad`` by ``policy``; returns the trainable count."""
    train = set(trainable_names(model, policy, block_prefixes))
    count = 0
    for name, param in model.named_parameters():
        param.requires_grad_(name in train)
        count += param.numel() if name in train else 0
    return count
