"""What an adapter-only checkpoint is: its record in ``meta``, the
identity of its base files, which state-dict keys it keeps, and reading and
writing checkpoint files."""
import hashlib
import os
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.config import Config

from mmadapter.backbones.base import AdapterBackboneMixin
from mmadapter.safe_load import load_checkpoint
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


def init_cfg_checkpoint(init_cfg) -> Optional[str]:
    """The checkpoint of a ``Pretrained`` entry of ``init_cfg`` (a dict or
    a list of them, as a config or a built module holds it), or None."""
    for cfg in init_cfg if isinstance(init_cfg, list) else [init_cfg]:
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' \
                and cfg.get('checkpoint'):
            return str(cfg['checkpoint'])
    return None


def pretrained_path(backbone: nn.Module) -> Optional[str]:
    """``init_cfg.checkpoint`` of a backbone with a ``Pretrained`` init."""
    return init_cfg_checkpoint(getattr(backbone, 'init_cfg', None))


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


def with_metadata(entries, like) -> OrderedDict:
    out = OrderedDict(entries)
    metadata = getattr(like, '_metadata', None)
    if metadata is not None:
        out._metadata = metadata
    return out


def adapter_state_dict(model: nn.Module) -> OrderedDict:
    """``model.state_dict()`` reduced to :func:`adapter_state_keys`."""
    state = model.state_dict()
    return with_metadata(((k, state[k]) for k in adapter_state_keys(model)),
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


def read_checkpoint_file(filename: str, map_location='cpu') -> dict:
    """A checkpoint file as a dict (local paths, and URLs,
    ``open-mmlab://``... through mmengine's loaders), weights-only
    (:mod:`.safe_load`)."""
    checkpoint = load_checkpoint(filename, map_location=map_location)
    if not isinstance(checkpoint, dict):
        raise AdapterCheckpointError(
            f'{filename} holds a {type(checkpoint).__name__}, not a '
            'checkpoint dict.')
    return checkpoint


def write_checkpoint(checkpoint: dict, filename: str) -> None:
    os.makedirs(osp.dirname(osp.abspath(filename)), exist_ok=True)
    torch.save(checkpoint, filename)


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
