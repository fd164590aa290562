"""Loading pretrained backbone weights: read, strip prefixes, convert, match,
report, and refuse to go on when nothing matched."""
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger, print_log

from mmadapter.safe_load import load_checkpoint


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that cannot initialise the model it was given to."""


class ConversionError(ValueError):
    """A checkpoint that is not in the format a converter expects."""


@dataclass
class LoadReport:
    checkpoint: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    missing_adapter: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    shape_mismatch: List[str] = field(default_factory=list)

    def summary(self, max_names: int = 10) -> str:

        def names(keys):
            shown = ', '.join(keys[:max_names])
            more = len(keys) - max_names
            return shown + (f', ... ({more} more)' if more > 0 else '')

        lines = [f'Loaded {len(self.loaded)} backbone tensors from '
                 f'{self.checkpoint}.']
        if self.missing_adapter:
            lines.append(f'Not in the checkpoint (adapters, initialised by '
                         f'their method): {len(self.missing_adapter)}.')
        if self.missing:
            lines.append(f'Missing backbone keys ({len(self.missing)}), left '
                         f'at their initial values: {names(self.missing)}')
        if self.shape_mismatch:
            lines.append(f'Skipped for a shape mismatch '
                         f'({len(self.shape_mismatch)}): '
                         f'{names(self.shape_mismatch)}')
        if self.unexpected:
            lines.append(f'Unused checkpoint keys ({len(self.unexpected)}): '
                         f'{names(self.unexpected)}')
        return '\n'.join(lines)


StateDict = Dict[str, torch.Tensor]


def strip_prefix(state_dict: StateDict, prefix: str) -> StateDict:
    """``state_dict`` with ``prefix`` removed from the keys that start with
    it; other keys unchanged, order kept."""
    return OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v)
                       for k, v in state_dict.items())


def split_backbone(state_dict: StateDict,
                   prefix: str = 'backbone.') -> Tuple[StateDict, StateDict]:
    """(backbone keys without ``prefix``, all other keys). A file without
    any ``prefix`` key is taken as a bare backbone."""
    if not any(k.startswith(prefix) for k in state_dict):
        return OrderedDict(state_dict), OrderedDict()
    backbone, rest = OrderedDict(), OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(prefix):
            backbone[key[len(prefix):]] = value
        else:
            rest[key] = value
    return backbone, rest


def unwrap_state_dict(checkpoint, source: str = 'The checkpoint'
                      ) -> StateDict:
    """The tensors of a loaded checkpoint, whatever its wrapping
    (``state_dict``, ``model``, ``module`` or bare), keys without a DDP
    ``module.`` prefix. ``source`` names the file in the error."""
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint, dict) and isinstance(
                checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'{source} holds a {type(checkpoint).__name__}, not a state '
            'dict.')
    return strip_prefix(
        OrderedDict((k, v) for k, v in checkpoint.items()
                    if isinstance(v, torch.Tensor)), 'module.')


def read_checkpoint(path: str) -> StateDict:
    """The state dict of a checkpoint file or URL
    (:func:`unwrap_state_dict`)."""
    if '://' not in path and not osp.isfile(path):
        raise FileNotFoundError(
            f'Pretrained checkpoint {path!r} does not exist. Download it as '
            'described in the README ("Pretrained weights") or fix the path '
            "in the config's init_cfg.checkpoint.")
    return unwrap_state_dict(load_checkpoint(path, map_location='cpu'),
                             path)


def strip_prefixes(state_dict: StateDict,
                   prefix: str = 'backbone.') -> StateDict:
    """Drop a DDP ``module.`` prefix, and when the file holds a whole model
    (keys under ``backbone.``), keep only the backbone's keys."""
    return split_backbone(strip_prefix(state_dict, 'module.'), prefix)[0]


def load_pretrained(model: nn.Module, path: str,
                    convert: Optional[
                        Callable[[Dict, nn.Module], Dict]] = None,
                    adapter_keys=(), derived_keys=(),
                    logger=None) -> LoadReport:
    """Load ``path`` into ``model`` (a backbone) non-strictly and report.

    ``convert(state_dict, model)`` maps the file's naming to the model's
    (official releases, other frameworks). Keys of ``adapter_keys`` are
    expected to be missing from a base checkpoint. Keys of ``derived_keys``
    are buffers computed from the config (e.g. Swin's relative position
    index, which depends on the window size): never loaded, never missing.
    Raises
    :class:`CheckpointMismatchError` when no tensor of the file matches the
    model, instead of silently training from random weights.
    """
    logger = logger or MMLogger.get_current_instance()
    state_dict = strip_prefixes(read_checkpoint(path))
    if convert is not None:
        state_dict = convert(state_dict, model)
    derived = set(derived_keys)
    own = {k: v for k, v in model.state_dict().items() if k not in derived}
    state_dict = {k: v for k, v in state_dict.items() if k not in derived}
    report = LoadReport(checkpoint=path)
    to_load = {}
    for key, value in state_dict.items():
        if key not in own:
            report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.shape_mismatch.append(
                f'{key} {tuple(value.shape)} vs {tuple(own[key].shape)}')
        else:
            to_load[key] = value
    report.loaded = sorted(to_load)
    adapter_keys = set(adapter_keys)
    for key in own:
        if key not in to_load:
            (report.missing_adapter
             if key in adapter_keys else report.missing).append(key)
    if not to_load:
        sample_file = ', '.join(list(state_dict)[:5]) or '(no tensors)'
        sample_model = ', '.join(list(own)[:5])
        raise CheckpointMismatchError(
            f'No tensor of {path} matches {type(model).__name__}: refusing to '
            f'train from random weights. File keys look like: {sample_file}; '
            f'the backbone expects keys like: {sample_model}. Check that the '
            'checkpoint is for this architecture, or convert it with '
            'tools/model_converters/.')
    model.load_state_dict(to_load, strict=False)
    print_log(report.summary(), logger=logger)
    return report
