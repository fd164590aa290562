"""Which model configuration a checkpoint was written for, so that a run
never continues or evaluates another run's checkpoint.

The record (``meta['model_config']``, written by
:class:`~mmadapter.engine.model_record_hook.ModelRecordHook`) holds what
decides the trained tensors: the adapter method with its options, the
tuning policy, the backbone architecture, the model type and every
``num_classes`` of the heads. A checkpoint without it (the stock tools', an
earlier mmadapter's) is described from the config text mmengine's Runner
records in ``meta['cfg']``, read as data (:mod:`.config_text`); one with
neither is loaded as it is, with a note.
"""
from typing import Dict, List, Optional

from .config_text import ConfigTextError, config_dict_from_text

#: Key of the record in ``checkpoint['meta']``.
MODEL_RECORD_KEY = 'model_config'

# backbone settings that decide the backbone's and the adapters' tensors
ARCH_KEYS = ('type', 'arch', 'embed_dims', 'depths', 'num_heads',
             'patch_size', 'window_size', 'mlp_ratio', 'num_layers')


class ModelConfigMismatchError(ValueError):
    """A checkpoint written for another model configuration."""


def _plain(value):
    """JSON-like plain data: dicts with sorted keys, lists for tuples."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return {str(k): _plain(v) for k, v in items}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return getattr(value, '__name__', repr(value))


def _class_counts(node, path: str, out: Dict[str, int]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            where = f'{path}.{key}' if path else str(key)
            if key == 'num_classes':
                out[where] = value
            else:
                _class_counts(value, where, out)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            _class_counts(value, f'{path}.{i}', out)


def model_record(model_cfg) -> dict:
    """The record of a ``model`` config (dict or ConfigDict)."""
    model_cfg = model_cfg or {}
    backbone = model_cfg.get('backbone') or {}
    counts: Dict[str, int] = {}
    _class_counts({k: v for k, v in model_cfg.items() if k != 'backbone'},
                  '', counts)
    return _plain(dict(
        model=model_cfg.get('type'),
        architecture={k: backbone.get(k) for k in ARCH_KEYS
                      if backbone.get(k) is not None},
        method=backbone.get('adapter'),
        tuning=backbone.get('tuning'),
        num_classes=counts))


def checkpoint_model_record(checkpoint: dict) -> Optional[dict]:
    """The record a checkpoint dict holds, else the one its recorded config
    text (``meta['cfg']``, or an adapter-only checkpoint's config) gives,
    else None."""
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return None
    if isinstance(meta.get(MODEL_RECORD_KEY), dict):
        return meta[MODEL_RECORD_KEY]
    adapter = meta.get('adapter_checkpoint')
    for text in (meta.get('cfg'),
                 adapter.get('config') if isinstance(adapter, dict) else None):
        if isinstance(text, str) and text:
            try:
                model = config_dict_from_text(text).get('model')
            except ConfigTextError:
                continue
            if isinstance(model, dict):
                return model_record(model)
    return None


def describe(record: dict) -> str:
    method = record.get('method')
    if isinstance(method, dict):
        options = ', '.join(f'{k}={v!r}' for k, v in method.items()
                            if k != 'type')
        method = f"{method.get('type')}({options})"
    arch = record.get('architecture') or {}
    arch_text = ', '.join(f'{k}={v!r}' for k, v in arch.items())
    classes = record.get('num_classes') or {}
    classes_text = ', '.join(f'{k}={v}' for k, v in classes.items())
    return (f"method {method or 'none'}, tuning "
            f"{record.get('tuning') or 'default'}, model "
            f"{record.get('model')}, backbone {arch_text or '?'}, "
            f"num_classes {classes_text or 'none'}")


def record_differences(saved: dict, current: dict) -> List[str]:
    """The fields of two records that differ."""
    return [key for key in ('method', 'tuning', 'model', 'architecture',
                            'num_classes')
            if _plain(saved.get(key)) != _plain(current.get(key))]


def check_model_record(checkpoint: dict, model_cfg, source: str,
                       fix: str = '') -> Optional[str]:
    """Raise :class:`ModelConfigMismatchError` naming both configurations
    when ``checkpoint`` was written for another model than ``model_cfg``
    describes; returns a note when it records none (else None)."""
    saved = checkpoint_model_record(checkpoint)
    if saved is None:
        return (f'{source} records no model configuration (a checkpoint of '
                'the stock tools or of an earlier mmadapter): loaded as it '
                'is, so make sure it was trained with this config.')
    current = model_record(model_cfg)
    differing = record_differences(saved, current)
    if differing:
        raise ModelConfigMismatchError(
            f'{source} was written for another model configuration (it '
            f"differs in: {', '.join(differing)}).\n"
            f'  checkpoint: {describe(saved)}\n'
            f'  this run:   {describe(current)}\n'
            'Nothing was loaded. '
            + (fix or 'Give a checkpoint of this configuration, or the '
               'config it was trained with.'))
    return None
