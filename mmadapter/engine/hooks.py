"""Training hooks of mmadapter."""
import math

import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import is_model_wrapper

from mmadapter.parameter_report import parameter_report
from mmadapter.registry import HOOKS
from .resume import SkipAheadIterator, random_states, set_random_states


@HOOKS.register_module()
class ParameterReportHook(Hook):
    """Logs the trainable-parameter table when training starts and stops
    the run before it begins when nothing would train."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        report = parameter_report(model)
        runner.logger.info('Parameter report:\n' + report.table())
        if report.model_trainable == 0:
            raise RuntimeError(
                'No parameter of the model trains: the tuning policy and the '
                'config freeze everything. Give the backbone an adapter, pick '
                "another tuning policy (e.g. tuning='adapter' or 'full'), or "
                'unfreeze the neck/head.')


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at the first non-finite loss, naming the iteration.

    mmengine logs a NaN loss and carries on; a days-long run then trains on
    garbage. (AMP's loss scaler already skips overflowing fp16 steps; a loss
    that is itself NaN or inf is a real divergence.)
    """

    priority = 'HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not outputs:
            return
        bad = {
            name: float(value)
            for name, value in outputs.items() if 'loss' in name
            and isinstance(value, (torch.Tensor, float)) and
            not math.isfinite(float(value))
        }
        if bad:
            raise RuntimeError(
                f'Non-finite loss at iteration {runner.iter + 1} (epoch '
                f'{runner.epoch + 1}): {bad}. Training stopped instead of '
                'continuing on NaN weights. Lower the learning rate, check '
                'the data, or resume from the last checkpoint with --resume.')


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Keeps the random generators' states in checkpoints and restores them
    on ``--resume``, so that an interrupted run goes on exactly as the
    uninterrupted one would (dropout, drop path, augmentation in the main
    process). mmengine only re-seeds on resume, which replays the first
    epoch's random numbers. Each rank keeps its own states.

    Two more things would make a resumed run draw other numbers, and are
    undone here: an iteration-based loop's advance over the batches already
    trained on (:class:`~mmadapter.engine.resume.SkipAheadIterator` skips
    them without transforming them), and validation during training, which
    draws too (a new dataloader iterator takes a seed) and is not repeated
    by a run resumed after it (it runs with the training states put aside).

    Checkpoints are written by the master process alone, so in multi-process
    runs the ranks' states are gathered (a collective) at the iterations or
    epochs where the CheckpointHook saves, just before it does.
    """

    META_KEY = 'random_states'
    priority = 'LOW'  # before the CheckpointHook (VERY_LOW) at each point

    def before_train(self, runner) -> None:
        self._gathered = None
        self._training = True
        self._checkpoint_hook = next(
            (h for h in runner.hooks if isinstance(h, CheckpointHook)), None)

    def after_train(self, runner) -> None:
        self._training = False

    def before_train_epoch(self, runner) -> None:
        loop = runner.train_loop
        if getattr(runner, '_resume', False) and loop.iter > 0 and \
                hasattr(loop, 'dataloader_iterator') and \
                not isinstance(loop.dataloader_iterator, SkipAheadIterator):
            # IterBasedTrainLoop advances its iterator by loop.iter batches
            # right after this hook
            loop.dataloader_iterator = SkipAheadIterator(
                loop.dataloader_iterator, loop.iter)

    def before_val(self, runner) -> None:
        if getattr(self, '_training', False):
            self._train_states = random_states()

    def after_val(self, runner) -> None:
        states = getattr(self, '_train_states', None)
        if states is not None:
            set_random_states(states)
            self._train_states = None

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        hook = self._checkpoint_hook
        if get_world_size() == 1 or hook is None or hook.by_epoch != by_epoch:
            return
        if by_epoch:
            due = self.every_n_epochs(runner, hook.interval) or \
                self.is_last_train_epoch(runner)
        else:
            due = self.every_n_train_iters(runner, hook.interval) or \
                self.is_last_train_iter(runner)
        if due:
            self._gathered = all_gather_object(random_states())

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # a checkpoint saved during validation (save_best) holds the states
        # training goes on with
        local = getattr(self, '_train_states', None) or random_states()
        states = [local] if get_world_size() == 1 \
            else getattr(self, '_gathered', None)
        if states:
            checkpoint.setdefault('meta', {})[self.META_KEY] = states

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('meta', {}).get(self.META_KEY)
        if not getattr(runner, '_resume', False) or not states:
            return
        if len(states) != get_world_size():
            runner.logger.warning(
                f'The checkpoint holds random states of {len(states)} '
                f'processes, this run has {get_world_size()}: they are not '
                'restored, so the resumed run will not repeat the '
                'uninterrupted one exactly.')
            return
        set_random_states(states[get_rank()])
