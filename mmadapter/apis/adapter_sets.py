"""Named adapter sets from adapter-only checkpoints.

A task trained with ``AdapterCheckpointHook`` (adapter-only files: the
adapters, neck and head, the config, and the base checkpoint's sha256)
becomes a named set of any backbone that holds the same base weights::

    task = read_task_checkpoint('work_dirs/voc/iter_600.pth')
    load_adapter_set(backbone, 'voc', task)   # checked, then added
    backbone.activate_adapter_set('voc')

A shared set (safetensors + JSON,
:mod:`mmadapter.checkpoint.adapter_set_files`;
tools/model_converters/adapter2safetensors.py writes it) is read the same
way, by either file of the pair.

:func:`check_adapter_set_checkpoint` holds every refusal, made before
anything changes: not an adapter-only checkpoint, another base (sha256),
another backbone architecture, a tuning policy that changed shared weights,
adapter tensors of another shape, a duplicate name.
"""
import os.path as osp
import warnings
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from mmengine.config import Config

from mmadapter.adapters.base import build_adapter
from mmadapter.backbones.base import (
    AdapterBackboneMixin,
    AdapterSet,
    architecture_of,
)
from mmadapter.checkpoint import (
    BaseCheckpointWarning,
    adapter_info,
    checkpoint_config,
    file_sha256,
    is_adapter_checkpoint,
    local_file,
    read_adapter_file,
)
from mmadapter.insertion import AdapterSetError
from mmadapter.tuning import normalize_policy


@dataclass
class TaskCheckpoint:
    """An adapter-only checkpoint read for serving: its file, contents,
    config and the prefix of its backbone in the task model."""
    path: str
    checkpoint: dict
    config: Config
    prefix: str

    @property
    def backbone_cfg(self) -> dict:
        cfg = self.config.model
        for part in self.prefix.split('.') if self.prefix else ():
            cfg = cfg.get(part) if isinstance(cfg, dict) else None
        if not isinstance(cfg, dict):
            raise AdapterSetError(
                f'{self.path}: its config has no model.{self.prefix} entry.')
        return cfg

    @property
    def base(self) -> dict:
        return adapter_info(self.checkpoint)['bases'][self.prefix]

    @property
    def frozen_not_in_base(self) -> List[str]:
        """Frozen backbone tensors the checkpoint holds because its base
        lacks them (as Swin's output norms on a Microsoft file)."""
        return list(self.base.get('frozen_not_in_base') or ())

    def _backbone_entries(self) -> Dict[str, torch.Tensor]:
        start = f'{self.prefix}.' if self.prefix else ''
        return {k[len(start):]: v
                for k, v in self.checkpoint['state_dict'].items()
                if k.startswith(start)}

    def backbone_state(self) -> Dict[str, torch.Tensor]:
        """The checkpoint's trained backbone entries (its adapters), keyed
        as in the backbone."""
        frozen = set(self.frozen_not_in_base)
        return {k: v for k, v in self._backbone_entries().items()
                if k not in frozen}

    def frozen_state(self) -> Dict[str, torch.Tensor]:
        """The entries of :attr:`frozen_not_in_base`, keyed as in the
        backbone."""
        entries = self._backbone_entries()
        return {k: entries[k] for k in self.frozen_not_in_base
                if k in entries}

    def task_state(self) -> Dict[str, torch.Tensor]:
        """Everything outside the backbone (neck, heads, their buffers)."""
        start = f'{self.prefix}.'
        return {k: v for k, v in self.checkpoint['state_dict'].items()
                if self.prefix and not k.startswith(start)}


def read_task_checkpoint(path: str, config=None) -> TaskCheckpoint:
    """Read an adapter-only checkpoint with one adapter backbone: a
    ``.pth`` file, or a safetensors + JSON adapter set (either file of the
    pair). ``config`` overrides the config it records."""
    checkpoint = read_adapter_file(path)
    if not is_adapter_checkpoint(checkpoint):
        raise AdapterSetError(
            f'{path} is not an adapter-only checkpoint (no '
            "meta['adapter_checkpoint'] record): only those can share a "
            'backbone. Save with AdapterCheckpointHook(adapter_only=True) or '
            'convert a full one with tools/model_converters/'
            'extract_adapter.py.')
    bases = adapter_info(checkpoint).get('bases') or {}
    if len(bases) != 1:
        raise AdapterSetError(
            f'{path} records {len(bases)} backbones ({sorted(bases)}); a '
            'task checkpoint for a shared backbone has exactly one.')
    return TaskCheckpoint(path=path, checkpoint=checkpoint,
                          config=checkpoint_config(checkpoint, config),
                          prefix=next(iter(bases)))


def backbone_base_sha256(backbone: nn.Module) -> Optional[str]:
    """sha256 of the base file the backbone's frozen weights were loaded
    from (its ``init_cfg`` Pretrained load), None if there is none."""
    report = getattr(backbone, 'pretrained_report', None)
    local = local_file(report.checkpoint) if report is not None else None
    return file_sha256(local) if local else None


def _short(digest: Optional[str]) -> str:
    return f'{digest[:12]}...' if digest else 'unknown'


def check_adapter_set_checkpoint(backbone: AdapterBackboneMixin,
                                 task: TaskCheckpoint,
                                 name: str,
                                 base_sha256: Optional[str] = None
                                 ) -> AdapterSet:
    """Raise :class:`AdapterSetError` unless ``task`` can become adapter set
    ``name`` of ``backbone``; returns that set, built (with its initial
    weights) but not added.

    ``base_sha256`` is the sha256 of the base the backbone holds (default:
    the file its ``init_cfg`` loaded). Checks, in order: the name is new;
    the checkpoint was trained on that base; its tuning trained adapters
    only; its backbone has this backbone's architecture; its adapter tensors
    fit the set this backbone builds. Nothing is changed.
    """
    if name in backbone.adapter_sets:
        raise AdapterSetError(
            f'An adapter set named {name!r} is already loaded (loaded: '
            f'{backbone.adapter_set_names()}); choose another name.')
    # the base
    held = base_sha256 or backbone_base_sha256(backbone)
    recorded = task.base.get('sha256')
    if held is None:
        raise AdapterSetError(
            f'{type(backbone).__name__} holds no known base checkpoint (its '
            'weights were not loaded from a file through '
            "init_cfg=dict(type='Pretrained', ...)), so it cannot be checked "
            f'against the base {task.path} was trained on; load the base '
            'first or pass base_sha256.')
    if recorded is None:
        warnings.warn(
            f'{task.path} records no sha256 of its base '
            f"({task.base.get('checkpoint')}): assuming the loaded base is "
            'the one it was trained on.', BaseCheckpointWarning)
    elif recorded != held:
        raise AdapterSetError(
            f'{task.path} was trained on the base '
            f"{task.base.get('checkpoint')} (sha256 {_short(recorded)}), but "
            f'this backbone holds another base (sha256 {_short(held)}): its '
            "adapters would not reproduce the trained model's outputs. Serve "
            'it from a backbone loaded from its own base file.')
    # adapters only
    cfg = task.backbone_cfg
    adapter = cfg.get('adapter')
    spec = build_adapter(adapter)
    policy = normalize_policy(cfg.get('tuning'), spec is not None)
    if spec is None or policy != 'adapter':
        raise AdapterSetError(
            f"{task.path} was trained with adapter={adapter!r}, "
            f"tuning='{policy}': only adapter-tuned models (tuning="
            "'adapter') leave the weights other tasks share untouched, so "
            'only they can be served as an adapter set.')
    # the architecture
    task_type = str(cfg.get('type', '')).split('.')[-1]
    if task_type != type(backbone).__name__:
        raise AdapterSetError(
            f'{task.path} has a {task_type} backbone; this one is a '
            f'{type(backbone).__name__}.')
    ours = backbone.architecture()
    theirs = architecture_of(type(backbone), cfg)
    differing = [f'{k}={theirs.get(k)!r} (here {ours.get(k)!r})'
                 for k in sorted(set(ours) | set(theirs))
                 if ours.get(k) != theirs.get(k)]
    if differing:
        raise AdapterSetError(
            f'{task.path} was trained on a backbone of another shape: '
            f'{", ".join(differing)}. An adapter set fits only the '
            'architecture it was trained on.')
    # the tensors: every backbone entry is the set's, with its shapes
    state = task.backbone_state()
    new = backbone.build_adapter_set(name, adapter)
    own = new.state_dict(keep_vars=True)
    extra = [k for k in state if k not in own]
    if extra:
        raise AdapterSetError(
            f'{task.path} holds backbone tensors that are not its adapters '
            f'(e.g. {", ".join(extra[:4])}): they were trained or changed, '
            'and the backbone shares them with the other tasks.')
    # frozen tensors the base lacks: the shared backbone must hold them as
    # the trained model did (both keep their initial values)
    own_state = backbone.state_dict()
    differing = [k for k, v in task.frozen_state().items()
                 if k not in own_state
                 or not torch.equal(v.cpu(), own_state[k].detach().cpu())]
    if differing:
        raise AdapterSetError(
            f'{task.path} was trained with frozen backbone tensors its base '
            f'lacks (e.g. {", ".join(differing[:4])}) that differ from this '
            "backbone's: the backbone shares them with the other tasks, so "
            'its adapters would not reproduce the trained outputs.')
    new.check_state_dict(state)
    return new


def load_adapter_set(backbone: AdapterBackboneMixin, name: str,
                     task, base_sha256: Optional[str] = None,
                     activate: bool = False) -> AdapterSet:
    """Add the adapters of ``task`` (a :class:`TaskCheckpoint` or a path)
    to ``backbone`` as set ``name``, after
    :func:`check_adapter_set_checkpoint`. With the set active the backbone
    computes what the trained model's backbone computed."""
    if not isinstance(task, TaskCheckpoint):
        task = read_task_checkpoint(osp.expanduser(str(task)))
    new = check_adapter_set_checkpoint(backbone, task, name, base_sha256)
    new.load_state_dict(task.backbone_state())
    return backbone.add_adapter_set(name, new, activate=activate)
