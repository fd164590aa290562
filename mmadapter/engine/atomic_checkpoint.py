"""Checkpoints that a crash, a kill or a full disk cannot leave half-written.

mmengine's ``CheckpointHook`` writes ``iter_N.pth`` in place and, with
``max_keep_ckpts``, deletes the oldest checkpoint *before* writing the new
one: a run killed (preempted, out of memory) or out of disk while saving can
be left with a truncated newest file and its predecessor already gone.

:class:`AtomicCheckpointHook` (the stock hook otherwise; tools/train.py uses
it in place of the stock one) writes each checkpoint to a hidden
``.NAME.partial`` file in the same directory, flushes it to disk and renames
it (an atomic step), then rewrites ``last_checkpoint`` the same way, and
only then deletes outdated checkpoints. A file named like a checkpoint is
therefore always complete, and ``--resume`` without a path (which reads
``last_checkpoint``) always finds the last complete one. A failed write
(e.g. ``ENOSPC``) stops the run with :class:`CheckpointWriteError`, the
previous checkpoint untouched.
"""
import errno
import glob
import os
import os.path as osp
import shutil

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from mmadapter.registry import HOOKS

PARTIAL_SUFFIX = '.partial'


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the previous one is intact."""


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(partial: str, final: str) -> None:
    """Flush ``partial`` to disk and rename it to ``final`` (same folder)."""
    _fsync(partial)
    os.replace(partial, final)
    try:
        _fsync(osp.dirname(osp.abspath(final)))  # the rename itself
    except OSError:
        pass  # directories cannot be opened on some systems


def write_text_atomically(path: str, text: str) -> None:
    partial = osp.join(osp.dirname(osp.abspath(path)),
                       '.' + osp.basename(path) + PARTIAL_SUFFIX)
    with open(partial, 'w') as f:
        f.write(text)
    replace_atomically(partial, path)


def partial_path(out_dir: str, filename: str) -> str:
    return osp.join(out_dir, '.' + filename + PARTIAL_SUFFIX)


def _free_space(path: str) -> str:
    try:
        return f'{shutil.disk_usage(path).free / 2**30:.2f} GiB free'
    except OSError:
        return 'free space unknown'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) whose checkpoints and
    ``last_checkpoint`` are written atomically, outdated checkpoints
    deleted only after the new one is complete. Remote ``out_dir``\\ s
    (no rename there) are saved as the stock hook saves them."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self._atomic() and is_main_process():
            for stale in glob.glob(osp.join(self.out_dir,
                                            '.*' + PARTIAL_SUFFIX)):
                runner.logger.warning(
                    f'Removing {stale}: a checkpoint whose writing was '
                    'interrupted (it was never taken as the latest).')
                os.remove(stale)

    def _atomic(self) -> bool:
        return isinstance(self.file_backend, LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._atomic():
            return super()._save_checkpoint_with_step(runner, step, meta)
        outdated = None
        if self.max_keep_ckpts > 0 and not (
                self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        partial = partial_path(self.out_dir, filename)
        try:
            runner.save_checkpoint(
                self.out_dir, osp.basename(partial), self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler, meta=meta,
                by_epoch=self.by_epoch, backend_args=self.backend_args,
                **self.args)
            if not is_main_process():
                return
            replace_atomically(partial, self.last_ckpt)
            write_text_atomically(osp.join(runner.work_dir,
                                           'last_checkpoint'), self.last_ckpt)
        except OSError as error:
            self._raise_write_error(runner, error, partial)
        if outdated is not None:
            old = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(outdated))
            if osp.isfile(old):
                os.remove(old)
            elif osp.isdir(old):  # deepspeed saves directories
                shutil.rmtree(old)

    def _raise_write_error(self, runner, error: OSError, partial: str):
        if osp.exists(partial):
            os.remove(partial)
        previous = osp.join(runner.work_dir, 'last_checkpoint')
        if osp.isfile(previous):
            with open(previous) as f:
                kept = (f'The previous checkpoint {f.read().strip()} is '
                        'intact and last_checkpoint still names it')
        else:
            kept = 'No earlier checkpoint was written'
        reason = 'the disk is full' if error.errno in (
            errno.ENOSPC, errno.EDQUOT) else (error.strerror or str(error))
        message = (
            f'Could not write checkpoint {self.last_ckpt}: {reason} '
            f'({_free_space(self.out_dir)} in {self.out_dir}). {kept}. Free '
            'space (or save elsewhere: default_hooks.checkpoint.out_dir, '
            'fewer files: max_keep_ckpts) and continue with --resume.')
        runner.logger.error(message)
        raise CheckpointWriteError(error.errno, message) from error
