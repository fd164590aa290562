"""Resuming an iteration-based run exactly.

mmengine's ``IterBasedTrainLoop`` resumes by fetching (loading and
transforming) every batch the interrupted run had trained on and throwing it
away. With the data pipeline in the main process (``num_workers=0``) those
transforms draw from the random generators that ``RandomStateHook`` has just
restored from the checkpoint, so the resumed run goes on with other random
numbers (flips, dropout, drop path) than the uninterrupted one did; with
workers it only costs the time of reading every skipped image again (hours
on a long run).

:class:`SkipAheadIterator` replaces that advance: in the main process it
takes the skipped batches' indices from the sampler without loading them;
with worker processes (whose random streams advance with every sample they
transform) it fetches them as mmengine does. Either way the main process's
random states are those of the checkpoint when the first new batch is
loaded.
"""
import random
from typing import Iterator

import numpy as np
import torch


def random_states() -> dict:
    """The states of the generators a training process draws from."""
    return dict(python=random.getstate(), numpy=np.random.get_state(),
                torch=torch.get_rng_state(),
                cuda=torch.cuda.get_rng_state_all()
                if torch.cuda.is_available() else None)


def set_random_states(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class SkipAheadIterator:
    """Wraps mmengine's ``_InfiniteDataloaderIterator``: the first ``skip``
    ``next()`` calls (the loop's advance after a resume) skip a batch
    without drawing random numbers in this process; later calls are the
    wrapped iterator's."""

    def __init__(self, iterator, skip: int):
        self._iterator = iterator
        self._to_skip = skip

    def __iter__(self) -> Iterator:
        return self

    def __next__(self):
        if self._to_skip <= 0:
            return next(self._iterator)
        self._to_skip -= 1
        state = random_states()
        try:
            if not self._skip_indices():
                next(self._iterator)
        finally:
            set_random_states(state)
        return None  # the loop discards skipped batches

    def _skip_indices(self) -> bool:
        """Take one batch of indices from the sampler of a single-process
        loader; False where a real fetch is needed (worker processes, or
        the end of a finite sampler, where the wrapped iterator restarts
        it)."""
        loader_iter = getattr(self._iterator, '_iterator', None)
        if loader_iter is None or getattr(loader_iter, '_num_workers', 1) \
                or not hasattr(loader_iter, '_next_index'):
            return False
        try:
            loader_iter._next_index()
        except StopIteration:
            return False  # exhausted: next() restarts it (and fetches)
        loader_iter._num_yielded += 1
        return True
