"""Whole-file conversions of checkpoints (tools/model_converters): merge an
adapter checkpoint with its base, extract one from a full checkpoint, fold
LoRA into a stock backbone."""
from collections import OrderedDict
from typing import Optional, Tuple

import torch.nn as nn
from mmengine.config import Config

from mmadapter.adapters import AdapterModule, LowRankDelta
from mmadapter.backbones.base import AdapterBackboneMixin
from mmadapter.backbones.pretrained import strip_prefix
from .loading import expand_adapter_checkpoint, verify_frozen_backbone
from .records import (
    ADAPTER_META_KEY,
    AdapterCheckpointError,
    backbone_prefixes,
    base_record,
    base_records_from_init_cfg,
    is_adapter_checkpoint,
    with_metadata,
)
from .saving import reduce_checkpoint


def strip_adapter_record(checkpoint: dict) -> dict:
    """A plain (full) checkpoint: ``meta`` without the adapter record, with
    ``adapter_merged_from`` noting the bases it was merged with."""
    meta = dict(checkpoint.get('meta') or {})
    info = meta.pop(ADAPTER_META_KEY, None)
    if info is not None:
        meta['adapter_merged_from'] = info.get('bases')
    return dict(meta=meta, state_dict=checkpoint['state_dict'])


def merge_adapter_checkpoint(checkpoint: dict, model: nn.Module,
                             base=None, logger=None) -> dict:
    """base + adapter-only checkpoint -> a plain full checkpoint (``meta``
    and ``state_dict``) for ``model``, checked by a strict load."""
    if not is_adapter_checkpoint(checkpoint):
        raise AdapterCheckpointError(
            'Not an adapter-only checkpoint (no meta.adapter_checkpoint '
            'record): nothing to merge.')
    expand_adapter_checkpoint(checkpoint, model, base, logger)
    model.load_state_dict(checkpoint['state_dict'], strict=True)
    return strip_adapter_record(checkpoint)


def extract_adapter_checkpoint(checkpoint: dict, model: nn.Module,
                               config=None, base: Optional[str] = None
                               ) -> dict:
    """A full checkpoint of ``model`` -> adapter-only (``meta`` and the
    reduced ``state_dict``). ``base`` overrides the backbone's ``init_cfg``
    checkpoint. Raises unless the base reproduces the frozen weights."""
    if is_adapter_checkpoint(checkpoint):
        raise AdapterCheckpointError('This is already an adapter-only '
                                     'checkpoint.')
    state = strip_prefix(checkpoint['state_dict'], 'module.')
    model.load_state_dict(state, strict=True)
    if base is None:
        bases = base_records_from_init_cfg(model)
    else:
        bases = {prefix: base_record(base, 'file')
                 for prefix in backbone_prefixes(model)}
    verify_frozen_backbone(model, bases)
    meta = dict(checkpoint.get('meta') or {})
    out = dict(meta=meta, state_dict=state)
    return reduce_checkpoint(out, model, config or meta.get('cfg'), bases)


def stock_backbone_type(backbone: nn.Module) -> str:
    """Registry name of the stock class an adapter backbone extends, e.g.
    ``'mmdet.SwinTransformer'``."""
    for cls in type(backbone).__mro__:
        if issubclass(cls, nn.Module) and \
                not cls.__module__.startswith('mmadapter'):
            return f"{cls.__module__.split('.')[0]}.{cls.__name__}"
    raise AdapterCheckpointError(
        f'{type(backbone).__name__} extends no stock backbone class.')


def fold_lora(model: nn.Module, cfg: Config) -> Tuple[OrderedDict, Config]:
    """Fold the LoRA updates of ``model`` into its frozen weights and return
    (a state dict without LoRA keys, ``cfg`` with the stock backbone). The
    stock model built from that config loads the state dict strictly."""
    cfg = Config(cfg.to_dict())  # not modified in place
    for prefix in backbone_prefixes(model):
        backbone = model.get_submodule(prefix) if prefix else model
        others = sorted({type(m).__name__ for m in backbone.modules()
                         if isinstance(m, AdapterModule)
                         and not isinstance(m, LowRankDelta)})
        if others:
            raise AdapterCheckpointError(
                f'Only LoRA folds into the frozen weights; this backbone also '
                f'has {others} modules, which a stock backbone cannot hold. '
                'Share it as base + adapter checkpoint instead.')
        if not isinstance(backbone, AdapterBackboneMixin) or \
                backbone.merge_lora() == 0:
            raise AdapterCheckpointError(
                f"The backbone {prefix or '(model)'} has no LoRA layers.")
        backbone_cfg = cfg.model.get(prefix) if prefix else cfg.model
        if not isinstance(backbone_cfg, dict):
            raise AdapterCheckpointError(
                f'The config has no model.{prefix} entry to make stock.')
        for key in ('adapter', 'tuning'):
            backbone_cfg.pop(key, None)
        backbone_cfg['type'] = stock_backbone_type(backbone)
        # every weight is in the merged file; a stock init_cfg load of the
        # base (a Microsoft file, say) could only get in the way
        backbone_cfg['init_cfg'] = None
    state = model.state_dict()
    folded = with_metadata(((k, v.detach().cpu()) for k, v in state.items()
                             if '.lora.' not in k), state)
    return folded, cfg
