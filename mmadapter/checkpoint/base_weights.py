"""The base file of an adapter-only checkpoint: finding it, checking it is
the one the adapters were trained on, reading the backbone weights from it
as its ``init_cfg`` would, and which frozen tensors it cannot supply."""
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from mmadapter.backbones.pretrained import read_checkpoint, strip_prefixes
from .records import (
    BaseCheckpointWarning,
    file_sha256,
    local_file,
    pretrained_path,
)


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
