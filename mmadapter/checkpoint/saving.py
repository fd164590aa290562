"""Saving adapter-only checkpoints: a full checkpoint reduced to what its
base files cannot restore."""
from typing import Dict, Optional

import torch.nn as nn

from .base_weights import frozen_keys_not_in_base
from .records import (
    ADAPTER_META_KEY,
    AdapterCheckpointError,
    adapter_record,
    adapter_state_keys,
    base_records_from_init_cfg,
    with_metadata,
    write_checkpoint,
)


def reduce_checkpoint(checkpoint: dict, model: nn.Module, config=None,
                      bases: Optional[Dict[str, dict]] = None) -> dict:
    """Turn a full checkpoint dict of ``model`` into an adapter-only one, in
    place: the state dict is reduced and the record added to ``meta``;
    optimizer, scheduler and message-hub states are left as they are."""
    state = checkpoint['state_dict']
    if bases is None:
        bases = base_records_from_init_cfg(model)
    not_in_base = frozen_keys_not_in_base(model, bases)
    bases = {prefix: dict(record, frozen_not_in_base=not_in_base[prefix])
             for prefix, record in bases.items()}
    keep = adapter_state_keys(model, not_in_base)
    absent = [k for k in keep if k not in state]
    if absent:
        raise AdapterCheckpointError(
            f'The checkpoint lacks {len(absent)} keys of the model it is '
            f'reduced for, e.g. {absent[:5]}: was it saved from another '
            'model?')
    checkpoint['state_dict'] = with_metadata(((k, state[k]) for k in keep),
                                              state)
    meta = checkpoint.setdefault('meta', {})
    meta[ADAPTER_META_KEY] = adapter_record(model, config, bases)
    return checkpoint


def save_adapter_checkpoint(model: nn.Module, filename: str, config=None,
                            meta: Optional[dict] = None,
                            bases: Optional[Dict[str, dict]] = None) -> dict:
    """Save an adapter-only checkpoint of ``model`` (weights and meta only;
    training runs save theirs through ``AdapterCheckpointHook``)."""
    checkpoint = dict(meta=dict(meta or {}), state_dict=model.state_dict())
    reduce_checkpoint(checkpoint, model, config, bases)
    state = checkpoint['state_dict']
    checkpoint['state_dict'] = with_metadata(
        ((k, v.detach().cpu()) for k, v in state.items()), state)
    write_checkpoint(checkpoint, filename)
    return checkpoint
