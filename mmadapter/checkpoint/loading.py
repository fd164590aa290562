"""Loading adapter-only checkpoints: the base weights put back around the
adapters (also where ``init_weights`` never runs, e.g. ``Runner.test()``)."""
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger, print_log

from mmadapter.backbones.pretrained import (
    CheckpointMismatchError,
    strip_prefix,
)
from mmadapter.version import __version__
from .adapter_set_files import read_adapter_file
from .base_weights import (
    check_base_hash,
    frozen_keys_not_in_base,
    read_base_backbone,
    resolve_base_path,
)
from .config_text import config_from_text
from .records import (
    FORMAT_VERSION,
    AdapterCheckpointError,
    BaseOverride,
    adapter_info,
    adapter_state_keys,
    backbone_prefixes,
    with_metadata,
)


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
    checkpoint['state_dict'] = with_metadata(
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
    state = strip_prefix(checkpoint['state_dict'], 'module.')
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
    (with its base; a ``.pth`` file or a safetensors + JSON adapter set) or
    full; see :func:`load_checkpoint_dict`."""
    return load_checkpoint_dict(model,
                                read_adapter_file(filename, map_location),
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
    return config_from_text(text)


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
