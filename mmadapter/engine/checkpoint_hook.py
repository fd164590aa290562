"""Hooks that save adapter-only checkpoints and load them in any run mode.

Use in a config in place of the stock checkpoint hook::

    default_hooks = dict(checkpoint=dict(
        type='mmadapter.AdapterCheckpointHook', interval=1,
        adapter_only=True))

It takes every argument of mmengine's ``CheckpointHook`` and writes files
atomically (:class:`~mmadapter.engine.atomic_checkpoint.AtomicCheckpointHook`).
Saved files keep
optimizer, scheduler and message-hub states (``--resume`` works); only the
model weights are reduced (:mod:`mmadapter.checkpoint`). When any checkpoint
is loaded (``load_from``, ``--resume``, ``tools/test.py``), an adapter-only
one is completed from its base weights before the Runner loads it; this
matters in ``Runner.test()``, which never runs ``init_weights``.

A config that keeps the stock checkpoint hook gets the loading half from
:func:`enable_adapter_checkpoint_loading` (tools/train.py and tools/test.py
call it) or from
``custom_hooks = [dict(type='mmadapter.AdapterCheckpointLoadHook')]``.
"""
from typing import Dict, Optional

from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmadapter.checkpoint import (
    adapter_info,
    backbone_prefixes,
    base_record,
    base_records_from_init_cfg,
    expand_adapter_checkpoint,
    reduce_checkpoint,
    verify_frozen_backbone,
)
from mmadapter.registry import HOOKS
from .atomic_checkpoint import AtomicCheckpointHook


def _unwrapped(runner):
    return runner.model.module if is_model_wrapper(runner.model) \
        else runner.model


def expand_for_runner(runner, checkpoint: dict) -> Optional[Dict[str, dict]]:
    """Complete an adapter-only checkpoint for the runner's model; returns
    the bases it records (None for a full checkpoint)."""
    info = adapter_info(checkpoint)
    if info is None:
        return None
    expand_adapter_checkpoint(checkpoint, _unwrapped(runner),
                              logger=runner.logger)
    return info.get('bases')


@HOOKS.register_module()
class AdapterCheckpointLoadHook(Hook):
    """Completes adapter-only checkpoints from their base when loaded."""

    priority = 'VERY_HIGH'  # before other hooks read the loaded weights

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        expand_for_runner(runner, checkpoint)


@HOOKS.register_module()
class AdapterCheckpointHook(AtomicCheckpointHook):
    """mmengine's CheckpointHook that saves adapter-only checkpoints
    (atomically, as :class:`AtomicCheckpointHook`).

    Args:
        adapter_only (bool): reduce saved model weights to what trained
            (plus neck/head buffers); False saves full checkpoints as the
            stock hook does. Loading adapter-only checkpoints works either
            way.
        **kwargs: the arguments of ``mmengine.hooks.CheckpointHook``.

    The base recorded in each file is the backbone's ``init_cfg``
    checkpoint, or the ``load_from`` file when a full checkpoint initialised
    the model, or the base of the adapter checkpoint the run started from.
    Before the first save the hook checks that this base reproduces the
    frozen backbone weights, and refuses to write a file that could not be
    restored.
    """

    def __init__(self, *args, adapter_only: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.adapter_only = adapter_only
        self._bases: Optional[Dict[str, dict]] = None
        self._verified = False

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        bases = expand_for_runner(runner, checkpoint)
        if bases is not None:
            self._bases = bases
        elif getattr(runner, '_load_from', None) and \
                not getattr(runner, '_resume', False):
            # A full checkpoint from load_from set the frozen weights.
            self._bases = {
                prefix: base_record(runner._load_from, 'load_from')
                for prefix in backbone_prefixes(_unwrapped(runner))
            }
        self._verified = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.adapter_only:
            return
        model = _unwrapped(runner)
        bases = self._bases or base_records_from_init_cfg(model)
        if not self._verified:
            verify_frozen_backbone(model, bases)
            self._verified = True
        config = checkpoint.get('meta', {}).get('cfg')
        reduce_checkpoint(checkpoint, model, config=config, bases=bases)


_STOCK_CHECKPOINT_HOOKS = ('CheckpointHook', 'mmengine.CheckpointHook')


def use_atomic_checkpoints(cfg: Config) -> Config:
    """Replace a config's stock ``CheckpointHook`` by
    :class:`AtomicCheckpointHook` (same arguments). Returns ``cfg``, changed
    in place."""
    hook = (cfg.get('default_hooks') or {}).get('checkpoint')
    if hook:
        name = hook.get('type')
        name = getattr(name, '__name__', name)
        if name in _STOCK_CHECKPOINT_HOOKS:
            hook['type'] = 'mmadapter.AtomicCheckpointHook'
    return cfg


def enable_adapter_checkpoint_loading(cfg: Config) -> Config:
    """Make a Runner built from ``cfg`` complete adapter-only checkpoints
    on load (``load_from``, resume, test), unless its checkpoint hook does
    already. Returns ``cfg``, changed in place."""
    checkpoint_hook = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    custom_hooks = list(cfg.get('custom_hooks') or [])
    types = [checkpoint_hook.get('type')] + [h.get('type')
                                             for h in custom_hooks]
    names = {getattr(t, '__name__', str(t)).split('.')[-1] for t in types}
    if names & {'AdapterCheckpointHook', 'AdapterCheckpointLoadHook'}:
        return cfg
    custom_hooks.append(dict(type='mmadapter.AdapterCheckpointLoadHook'))
    cfg.custom_hooks = custom_hooks
    return cfg
