"""Faults for tests/test_faults.py, injected into a real training process
through a hook the test configs add (``custom_imports``). The fault is read
from the environment, so the resumed run (without the variable) uses the
same config:

    MMADAPTER_FAULT=kill_iter:N      SIGKILL in the forward pass of
                                     iteration N (1-based)
    MMADAPTER_FAULT=kill_save:N      SIGKILL halfway through writing the
                                     N-th checkpoint file of this process
    MMADAPTER_FAULT_RANK=R           only on rank R (default: every rank)
"""
import os
import signal

from mmengine.fileio import LocalBackend
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def kill_now():
    os.kill(os.getpid(), signal.SIGKILL)


def parse_fault():
    text = os.environ.get('MMADAPTER_FAULT')
    if not text:
        return None, None
    kind, _, number = text.partition(':')
    return kind, int(number)


def kill_halfway_through_the_nth_save(n: int) -> None:
    """Make the n-th checkpoint file written die halfway (bytes on disk,
    flushed, then the process is killed)."""
    original = LocalBackend.put
    count = [0]

    def put(self, obj, filepath):
        if str(filepath).endswith(('.pth', '.pth.partial')):
            count[0] += 1
            if count[0] == n:
                with open(filepath, 'wb') as f:
                    f.write(obj[:len(obj) // 2])
                    f.flush()
                    os.fsync(f.fileno())
                kill_now()
        return original(self, obj, filepath)

    LocalBackend.put = put


@HOOKS.register_module()
class FaultInjectionHook(Hook):

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        self.kind, self.number = parse_fault()
        rank = os.environ.get('MMADAPTER_FAULT_RANK')
        if rank is not None and int(rank) != runner.rank:
            self.kind = None
        if self.kind == 'kill_save':
            kill_halfway_through_the_nth_save(self.number)

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.kind != 'kill_iter' or runner.iter + 1 != self.number:
            return
        model = runner.model.module if is_model_wrapper(runner.model) \
            else runner.model
        # mid-iteration: the batch is loaded, the forward pass under way
        model.backbone.register_forward_hook(lambda *args: kill_now())
