"""Adapter-only checkpoints: what they hold, how to save, load and merge them.

An adapter-only checkpoint is an ordinary mmengine checkpoint (``meta``,
``state_dict`` and, from training, ``optimizer``, ``param_schedulers``,
``message_hub``) whose ``state_dict`` keeps only what the base weights
cannot restore:

* every parameter that trains (adapters, neck, head, and any backbone
  parameter the tuning policy trains);
* every entry outside the backbone (neck/head buffers such as BatchNorm
  running statistics, and frozen neck/head parameters if there are any);
* inside the backbone, the buffers of modules that own a trained parameter,
  and the frozen parameters the base file lacks (Swin's per-stage output
  norms ``norm0..3`` on a Microsoft ImageNet base: they keep their initial
  values, which nothing else could restore). The record lists those per
  backbone (``frozen_not_in_base``).

``meta['adapter_checkpoint']`` marks it and records the config text that
built the model and, per backbone, the base checkpoint (path, sha256, and
whether it came from ``init_cfg`` or ``load_from``). Loading puts the base
weights back (:func:`expand_adapter_checkpoint`): the backbone's frozen
weights come from the base file, read and converted exactly as its
``init_cfg`` would, so this also works where ``init_weights`` never runs
(``Runner.test()``).
"""
import hashlib
import os
import os.path as osp
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log
from mmengine.runner.checkpoint import CheckpointLoader

from mmadapter.adapters import AdapterModule, LowRankDelta
from mmadapter.backbones.base import AdapterBackboneMixin
from mmadapter.pretrained import (CheckpointMismatchError, read_checkpoint,
                                  strip_prefixes)
from mmadapter.version import __version__

#: Key of the adapter-checkpoint record in ``checkpoint['meta']``.
ADAPTER_META_KEY = 'adapter_checkpoint'
FORMAT_VERSION = 1
#: A base file for every backbone, or one per backbone prefix.
BaseOverride = Optional[Union[str, Dict[str, str]]]


class AdapterCheckpointError(RuntimeError):
    """An adapter-only checkpoint that cannot be written or read as asked."""


class BaseCheckpointWarning(UserWarning):
    """A base checkpoint that is not the one the adapters were trained on."""


# -- the base checkpoint's identity ---------------------------------------
_HASH_CACHE: Dict[Tuple[str, int, int], str] = {}


def file_sha256(path: str) -> str:
    """sha256 of a file, computed once per (path, mtime, size)."""
    path = osp.realpath(osp.expanduser(path))
    stat = os.stat(path)
    key = (path, stat.st_mtime_ns, stat.st_size)
    if key not in _HASH_CACHE:
        digest = hashlib.sha256()
        with open(path, 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 22), b''):
                digest.update(chunk)
        _HASH_CACHE[key] = digest.hexdigest()
    return _HASH_CACHE[key]


def local_file(path: str) -> Optional[str]:
    """The local file behind ``path``: itself, or for a URL the copy in
    torch's hub cache (where mmengine downloads it), if there is one."""
    if '://' not in path:
        expanded = osp.expanduser(path)
        return expanded if osp.isfile(expanded) else None
    cached = osp.join(torch.hub.get_dir(), 'checkpoints',
                      osp.basename(path.split('?')[0]))
    return cached if osp.isfile(cached) else None


def base_record(path: str, source: str) -> dict:
    """Identity of a base checkpoint: path, sha256 (None when no local copy
    exists, e.g. a URL not downloaded yet) and where it came from."""
    local = local_file(path)
    return dict(checkpoint=path,
                sha256=file_sha256(local) if local else None,
                source=source)


def pretrained_path(backbone: nn.Module) -> Optional[str]:
    """``init_cfg.checkpoint`` of a backbone with a ``Pretrained`` init."""
    init_cfg = getattr(backbone, 'init_cfg', None)
    for cfg in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' \
                and cfg.get('checkpoint'):
            return str(cfg['checkpoint'])
    return None


# -- what an adapter-only checkpoint holds --------------------------------
def backbone_prefixes(model: nn.Module) -> List[str]:
    """Module paths of the model's adapter backbones (``'backbone'``; ``''``
    for a bare backbone), or of a stock ``model.backbone``."""
    found = [name for name, module in model.named_modules()
             if isinstance(module, AdapterBackboneMixin)]
    if not found and isinstance(getattr(model, 'backbone', None), nn.Module):
        found = ['backbone']
    if not found:
        raise AdapterCheckpointError(
            f'{type(model).__name__} has no backbone (no adapter backbone '
            'and no `backbone` attribute): adapter-only checkpoints store '
            'what trained on top of a pretrained backbone.')
    return found


def _under(key: str, prefix: str) -> bool:
    return prefix == '' or key.startswith(prefix + '.')


def adapter_state_keys(model: nn.Module,
                       not_in_base: Optional[Dict[str, List[str]]] = None
                       ) -> List[str]:
    """The state-dict keys an adapter-only checkpoint of ``model`` keeps,
    in state-dict order (see the module docstring for the rule).
    ``not_in_base`` (:func:`frozen_keys_not_in_base`) adds, per backbone
    prefix, the frozen backbone parameters its base lacks."""
    prefixes = backbone_prefixes(model)
    extra = {f'{prefix}.{key}' if prefix else key
             for prefix, keys in (not_in_base or {}).items() for key in keys}
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    owners = {name.rpartition('.')[0]
              for name, p in model.named_parameters(remove_duplicate=False)
              if p.requires_grad}
    keep = []
    for key, value in model.state_dict(keep_vars=True).items():
        in_backbone = any(_under(key, p) for p in prefixes)
        is_param = isinstance(value, nn.Parameter)
        if (not in_backbone or key in extra
                or (is_param and id(value) in trained)
                or (not is_param and key.rpartition('.')[0] in owners)):
            keep.append(key)
    return keep


def _with_metadata(entries, like) -> OrderedDict:
    out = OrderedDict(entries)
    metadata = getattr(like, '_metadata', None)
    if metadata is not None:
        out._metadata = metadata
    return out


def adapter_state_dict(model: nn.Module) -> OrderedDict:
    """``model.state_dict()`` reduced to :func:`adapter_state_keys`."""
    state = model.state_dict()
    return _with_metadata(((k, state[k]) for k in adapter_state_keys(model)),
                          state)


def config_text(config) -> Optional[str]:
    """The text of a config given as :class:`Config`, a file path, or text
    (a string with a line break)."""
    if config is None or isinstance(config, str) and '\n' in config:
        return config
    if isinstance(config, str):
        if not osp.isfile(config):
            raise FileNotFoundError(f'Config file {config!r} not found.')
        config = Config.fromfile(config)
    if isinstance(config, Config):
        return config.pretty_text
    raise TypeError(f'config must be a Config, a path or text, not '
                    f'{type(config).__name__}.')


def base_records_from_init_cfg(model: nn.Module) -> Dict[str, dict]:
    records = {}
    for prefix in backbone_prefixes(model):
        backbone = model.get_submodule(prefix) if prefix else model
        path = pretrained_path(backbone)
        if path is None:
            raise AdapterCheckpointError(
                f'Cannot save an adapter-only checkpoint: the backbone '
                f"{prefix or '(model)'} has no pretrained base "
                "(init_cfg=dict(type='Pretrained', checkpoint=...)), so its "
                'frozen weights could not be restored. Give it one, or save '
                'full checkpoints (AdapterCheckpointHook(adapter_only=False) '
                'or the stock CheckpointHook).')
        records[prefix] = base_record(path, 'init_cfg')
    return records


def adapter_record(model: nn.Module, config=None,
                   bases: Optional[Dict[str, dict]] = None) -> dict:
    """The ``meta['adapter_checkpoint']`` entry for ``model``."""
    return dict(format_version=FORMAT_VERSION, mmadapter_version=__version__,
                config=config_text(config),
                bases=bases if bases is not None
                else base_records_from_init_cfg(model))


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
    checkpoint['state_dict'] = _with_metadata(((k, state[k]) for k in keep),
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
    checkpoint['state_dict'] = _with_metadata(
        ((k, v.detach().cpu()) for k, v in state.items()), state)
    write_checkpoint(checkpoint, filename)
    return checkpoint


def read_checkpoint_file(filename: str, map_location='cpu') -> dict:
    """A checkpoint file as a dict (mmengine's loaders: local paths, URLs,
    ``open-mmlab://``...; full unpickling, see :mod:`mmadapter.compat`)."""
    checkpoint = CheckpointLoader.load_checkpoint(filename,
                                                  map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise AdapterCheckpointError(
            f'{filename} holds a {type(checkpoint).__name__}, not a '
            'checkpoint dict.')
    return checkpoint


def write_checkpoint(checkpoint: dict, filename: str) -> None:
    os.makedirs(osp.dirname(osp.abspath(filename)), exist_ok=True)
    torch.save(checkpoint, filename)


# -- loading -------------------------------------------------------------
def adapter_info(checkpoint) -> Optional[dict]:
    """The adapter record of a checkpoint dict, or None for others."""
    if not isinstance(checkpoint, dict):
        return None
    meta = checkpoint.get('meta')
    record = meta.get(ADAPTER_META_KEY) if isinstance(meta, dict) else None
    return record if isinstance(record, dict) else None


def is_adapter_checkpoint(checkpoint) -> bool:
    """True for an adapter-only checkpoint that still needs its base."""
    info = adapter_info(checkpoint)
    return info is not None and not info.get('expanded', False)


@dataclass
class ExpansionReport:
    """Where the weights of an expanded adapter checkpoint came from."""
    bases: Dict[str, str] = field(default_factory=dict)  # prefix -> path
    from_base: int = 0
    from_adapter: int = 0
    defaulted_buffers: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def summary(self) -> str:
        bases = ', '.join(f"{p or 'model'} <- {path}"
                          for p, path in self.bases.items())
        lines = [f'Adapter-only checkpoint: {self.from_base} tensors from the '
                 f'base ({bases}), {self.from_adapter} from the adapter '
                 'checkpoint.']
        if self.defaulted_buffers:
            lines.append('Backbone buffers not in the base, kept as built: '
                         + ', '.join(self.defaulted_buffers[:10]))
        if self.unexpected:
            lines.append('Adapter checkpoint keys this model does not have: '
                         + ', '.join(self.unexpected[:10]))
        return '\n'.join(lines)


def resolve_base_path(record: dict, backbone: nn.Module,
                      base: Optional[str] = None) -> str:
    """The base file to load: ``base`` if given; else the backbone's
    configured ``init_cfg`` checkpoint when the base came from ``init_cfg``
    (so a moved file is found through the config); else the recorded one."""
    if base:
        return base
    if record.get('source', 'init_cfg') == 'init_cfg':
        configured = pretrained_path(backbone)
        if configured:
            return configured
    return record['checkpoint']


def check_base_hash(path: str, record: dict, logger=None) -> None:
    """Warn when ``path`` is not the file the adapters were trained on."""
    expected = record.get('sha256')
    local = local_file(path)
    if expected is None or local is None:
        return
    actual = file_sha256(local)
    if actual != expected:
        message = (
            f'Base checkpoint {path} (sha256 {actual[:12]}...) is not the one '
            f"the adapters were trained on ({record.get('checkpoint')}, "
            f'sha256 {expected[:12]}...): results will differ from the '
            "trained model's. Use the original base weights.")
        warnings.warn(message, BaseCheckpointWarning, stacklevel=3)
        print_log(message, logger=logger or MMLogger.get_current_instance(),
                  level=30)


def read_base_backbone(backbone: nn.Module,
                       path: str) -> Dict[str, torch.Tensor]:
    """The base file's backbone tensors, named as the backbone names them:
    the same reading and conversion as the backbone's ``init_cfg`` load."""
    if '://' not in path and not osp.isfile(osp.expanduser(path)):
        raise FileNotFoundError(
            f'Base checkpoint {path} not found. An adapter-only checkpoint '
            'holds the trained weights only; the frozen backbone weights come '
            'from this file. Point model.backbone.init_cfg.checkpoint (or '
            '--base) at your copy of it.')
    state_dict = strip_prefixes(read_checkpoint(path))
    convert = getattr(backbone, 'convert_pretrained', None)
    state_dict = convert(state_dict, backbone) if convert else state_dict
    _BASE_KEYS[_base_keys_id(backbone, path)] = frozenset(state_dict)
    return state_dict


# the backbone keys of each base file, so that every save of a run can tell
# what its base lacks without reading the (800 MB) file again
_BASE_KEYS: Dict[tuple, frozenset] = {}


def _base_keys_id(backbone: nn.Module, path: str) -> tuple:
    local = local_file(path)
    if local is None:
        return (path, type(backbone).__qualname__)
    stat = os.stat(local)
    return (osp.realpath(local), stat.st_mtime_ns, stat.st_size,
            type(backbone).__qualname__)


def base_backbone_keys(backbone: nn.Module, path: str) -> frozenset:
    """The keys :func:`read_base_backbone` gives, read once per file."""
    keys = _BASE_KEYS.get(_base_keys_id(backbone, path))
    return keys if keys is not None else frozenset(
        read_base_backbone(backbone, path))


def frozen_keys_not_in_base(model: nn.Module, bases: Dict[str, dict]
                            ) -> Dict[str, List[str]]:
    """Per backbone prefix, its frozen parameters (keys as the backbone
    names them) that its base file cannot supply, e.g. Swin's per-stage
    output norms on a Microsoft ImageNet file: an adapter-only checkpoint
    keeps them at the values the model holds."""
    out = {}
    for prefix, record in bases.items():
        backbone = model.get_submodule(prefix) if prefix else model
        in_base = base_backbone_keys(backbone,
                                     resolve_base_path(record, backbone))
        derived = set(getattr(backbone, 'derived_state_keys', tuple)())
        out[prefix] = [
            key for key, value in backbone.state_dict(keep_vars=True).items()
            if isinstance(value, nn.Parameter) and not value.requires_grad
            and key not in in_base and key not in derived]
    return out


def base_backbone_state(model: nn.Module, prefix: str, path: str,
                        provided, report: ExpansionReport
                        ) -> Dict[str, torch.Tensor]:
    """The backbone entries (full model keys) that ``provided`` (the adapter
    state) lacks, from the base file. Raises when the base lacks some."""
    backbone = model.get_submodule(prefix) if prefix else model
    base = read_base_backbone(backbone, path)
    # buffers computed from the config (Swin's relative position index)
    derived = set(getattr(backbone, 'derived_state_keys', tuple)())
    out, missing, mismatched = OrderedDict(), [], []
    for key, value in backbone.state_dict(keep_vars=True).items():
        full_key = f'{prefix}.{key}' if prefix else key
        if full_key in provided:
            continue
        if key in derived:
            out[full_key] = value.detach()
        elif key not in base:
            if value.requires_grad:
                continue  # trained: the adapter checkpoint must hold it
            if isinstance(value, nn.Parameter):
                missing.append(key)
            else:
                report.defaulted_buffers.append(full_key)
                out[full_key] = value.detach()
        elif base[key].shape != value.shape:
            mismatched.append(f'{key} {tuple(base[key].shape)} vs '
                              f'{tuple(value.shape)}')
        else:
            out[full_key] = base[key]
    if missing or mismatched:
        problems = []
        if missing:
            problems.append(f'{len(missing)} frozen backbone parameters are '
                            f'not in it (e.g. {", ".join(missing[:5])})')
        if mismatched:
            problems.append(f'{len(mismatched)} have another shape (e.g. '
                            f'{", ".join(mismatched[:3])})')
        raise CheckpointMismatchError(
            f'Base checkpoint {path} does not fit the backbone '
            f"{prefix or '(model)'}: {'; '.join(problems)}. It is not the "
            'base these adapters were trained on (or not for this '
            'architecture); use the base recorded in the adapter checkpoint.')
    return out


def expand_adapter_checkpoint(checkpoint: dict, model: nn.Module,
                              base: BaseOverride = None,
                              logger=None) -> ExpansionReport:
    """Complete an adapter-only checkpoint dict for ``model`` in place: its
    ``state_dict`` becomes the full state dict (base weights plus adapter
    state) and the record is marked expanded. Others are left untouched.

    ``base`` overrides the base file (a path, or per backbone prefix a dict
    of paths). Warns when the base differs from the recorded one (sha256);
    raises :class:`CheckpointMismatchError` when the base or the adapter
    state does not fit the model.
    """
    report = ExpansionReport()
    info = adapter_info(checkpoint)
    if info is None or info.get('expanded'):
        return report
    if info.get('format_version', 0) > FORMAT_VERSION:
        raise AdapterCheckpointError(
            f"Adapter checkpoint format {info['format_version']} is newer "
            f'than this mmadapter ({__version__}) reads; update mmadapter.')
    provided = checkpoint['state_dict']
    own_keys = list(model.state_dict().keys())
    full = OrderedDict()
    for prefix in backbone_prefixes(model):
        record = info.get('bases', {}).get(prefix)
        if record is None:
            raise AdapterCheckpointError(
                f"The adapter checkpoint records no base for the backbone "
                f"{prefix or '(model)'} (it has bases for "
                f"{sorted(info.get('bases', {}))}): it was saved from another "
                'model.')
        override = base.get(prefix) if isinstance(base, dict) else base
        backbone = model.get_submodule(prefix) if prefix else model
        path = resolve_base_path(record, backbone, override)
        check_base_hash(path, record, logger)
        full.update(base_backbone_state(model, prefix, path, provided,
                                        report))
        report.bases[prefix] = path
    report.from_base = len(full)
    own = set(own_keys)
    report.unexpected = [k for k in provided if k not in own]
    for key, value in provided.items():
        if key in own:
            full[key] = value
    report.from_adapter = len(full) - report.from_base
    missing = [k for k in own_keys if k not in full]
    if missing:
        raise CheckpointMismatchError(
            f'The adapter checkpoint lacks {len(missing)} entries that this '
            f'model trains or holds outside its backbone (e.g. '
            f'{", ".join(missing[:5])}): it was trained with another config '
            '(adapter, tuning policy, neck or head). Use the config it '
            "records (meta['adapter_checkpoint']['config']).")
    checkpoint['state_dict'] = _with_metadata(
        ((k, full[k]) for k in own_keys), provided)
    info['expanded'] = True
    print_log(report.summary(),
              logger=logger or MMLogger.get_current_instance())
    return report


def load_checkpoint_dict(model: nn.Module, checkpoint: dict,
                         base: BaseOverride = None, strict: bool = True,
                         logger=None) -> dict:
    """Load a checkpoint dict into ``model``: an adapter-only one is
    completed from its base first (:func:`expand_adapter_checkpoint`),
    others are loaded as they are. Returns the (expanded) checkpoint."""
    if 'state_dict' not in checkpoint:
        checkpoint = dict(state_dict=checkpoint)
    expand_adapter_checkpoint(checkpoint, model, base, logger)
    state = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in checkpoint['state_dict'].items())
    result = model.load_state_dict(state, strict=strict)
    if not strict and (result.missing_keys or result.unexpected_keys):
        print_log(f'Missing keys {result.missing_keys[:10]}, unexpected '
                  f'keys {result.unexpected_keys[:10]}',
                  logger=logger or MMLogger.get_current_instance(), level=30)
    return checkpoint


def load_adapter_checkpoint(model: nn.Module, filename: str,
                            base: BaseOverride = None,
                            map_location='cpu', strict: bool = True,
                            logger=None) -> dict:
    """Load any checkpoint file into ``model`` in one call, adapter-only
    (with its base) or full; see :func:`load_checkpoint_dict`."""
    return load_checkpoint_dict(model,
                                read_checkpoint_file(filename, map_location),
                                base, strict, logger)


def checkpoint_config(checkpoint: dict, config=None) -> Config:
    """The config to build a checkpoint's model from: ``config`` (a file or
    :class:`Config`) if given, else the one the checkpoint records."""
    if isinstance(config, Config):
        return config
    if config is not None:
        return Config.fromfile(config)
    info = adapter_info(checkpoint) or {}
    meta = checkpoint.get('meta') or {}
    text = info.get('config') or meta.get('cfg') or meta.get('config')
    if not text:
        raise AdapterCheckpointError(
            'The checkpoint records no config; pass the config that built '
            'its model (--config).')
    return Config.fromstring(text, file_format='.py')


def verify_frozen_backbone(model: nn.Module, bases: Dict[str, dict],
                           keep: Optional[List[str]] = None) -> None:
    """Raise unless the base files reproduce every backbone tensor of
    ``model`` that an adapter-only checkpoint leaves out."""
    if keep is None:
        keep = adapter_state_keys(model, frozen_keys_not_in_base(model, bases))
    keep = set(keep)
    own = model.state_dict()
    for prefix, record in bases.items():
        backbone = model.get_submodule(prefix) if prefix else model
        report = ExpansionReport()
        path = resolve_base_path(record, backbone)
        restored = base_backbone_state(model, prefix, path, keep, report)
        differing = [k for k, v in restored.items()
                     if k not in report.defaulted_buffers
                     and not torch.equal(v.cpu(), own[k].detach().cpu())]
        if differing:
            raise AdapterCheckpointError(
                f'{len(differing)} frozen backbone tensors differ from the '
                f'base {path} (e.g. {", ".join(differing[:5])}), so an '
                'adapter-only checkpoint would not reproduce this model. Were '
                'they loaded from another file (load_from) or trained? Save '
                'full checkpoints (adapter_only=False), or make the base the '
                'file they came from.')


def strip_adapter_record(checkpoint: dict) -> dict:
    """A plain (full) checkpoint: ``meta`` without the adapter record, with
    ``adapter_merged_from`` noting the bases it was merged with."""
    meta = dict(checkpoint.get('meta') or {})
    info = meta.pop(ADAPTER_META_KEY, None)
    if info is not None:
        meta['adapter_merged_from'] = info.get('bases')
    return dict(meta=meta, state_dict=checkpoint['state_dict'])


# -- whole-file conversions (tools/model_converters) -----------------------
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
    state = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in checkpoint['state_dict'].items())
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
    folded = _with_metadata(((k, v.detach().cpu()) for k, v in state.items()
                             if '.lora.' not in k), state)
    return folded, cfg
