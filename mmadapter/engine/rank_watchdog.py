"""A lost rank of a multi-process run named, within a bounded time.

When one process of a job dies (killed, out of memory, its machine gone),
the others either fail in their next collective with a transport error
that does not say which rank is gone (gloo: ``Connection closed by peer``)
or, when nothing closes the connection, wait in it for the process group's
timeout (30 minutes by default). torchrun stops the other workers of its
node itself; launchers without an agent (srun, mpirun) do not.

:class:`RankWatchdog` runs a thread per rank that counts a heartbeat in the
job's rendezvous store (``MASTER_ADDR:MASTER_PORT``) and watches the
others'. tools/train.py starts it in multi-process runs and

* turns an error of the training process, when a rank has stopped beating,
  into :class:`LostRankError` naming that rank;
* ends a process whose training is stuck (a rank lost, nothing raised
  within ``timeout`` more seconds) with the same message, instead of
  hanging.
"""
import datetime
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Dict, List, Optional

import torch.distributed as torch_dist

TIMEOUT_ENV = 'MMADAPTER_RANK_TIMEOUT'  # seconds without a heartbeat
DEFAULT_TIMEOUT = 60.0
EXIT_CODE = 75


class LostRankError(RuntimeError):
    """Another process of the job stopped."""


class RankWatchdog:

    def __init__(self, rank: int, world_size: int, store,
                 timeout: float = DEFAULT_TIMEOUT,
                 interval: Optional[float] = None):
        self.rank, self.world_size, self.store = rank, world_size, store
        self.timeout = timeout
        self.interval = interval or max(0.2, min(5.0, timeout / 10))
        self._seen: Dict[int, tuple] = {}  # rank -> (count, when it changed)
        self._store_lost_at: Optional[float] = None
        self._lost_at: Optional[float] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name='mmadapter-rank-watchdog')

    @classmethod
    def for_this_job(cls) -> Optional['RankWatchdog']:
        """A started watchdog for a multi-process run, else None."""
        if not torch_dist.is_initialized() or \
                torch_dist.get_world_size() < 2:
            return None
        timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT))
        store = torch_dist.TCPStore(
            os.environ['MASTER_ADDR'], int(os.environ['MASTER_PORT']),
            is_master=False,
            timeout=datetime.timedelta(seconds=max(5.0, timeout / 4)))
        watchdog = cls(torch_dist.get_rank(), torch_dist.get_world_size(),
                       store, timeout)
        watchdog._thread.start()
        return watchdog

    def _key(self, kind: str, rank: int) -> str:
        return f'mmadapter/{kind}/{rank}'

    def _beat(self) -> None:
        now = time.monotonic()
        try:
            self.store.add(self._key('heartbeat', self.rank), 1)
            for rank in range(self.world_size):
                if rank == self.rank:
                    continue
                count = self.store.add(self._key('heartbeat', rank), 0)
                done = self.store.add(self._key('done', rank), 0)
                previous = self._seen.get(rank)
                if done or previous is None or previous[0] != count:
                    self._seen[rank] = (count, now, bool(done))
            self._store_lost_at = None
        except Exception:  # the store's host is gone
            if self._store_lost_at is None:
                self._store_lost_at = now

    def lost_ranks(self) -> List[int]:
        """Ranks whose heartbeat has not changed for ``timeout`` seconds
        (all others, when the store itself is unreachable that long: its
        host is rank 0 or the launcher)."""
        now = time.monotonic()
        if self._store_lost_at is not None and \
                now - self._store_lost_at > self.timeout:
            return [0] if self.rank != 0 else []
        return sorted(rank for rank, (_, when, done) in self._seen.items()
                      if not done and now - when > self.timeout)

    def message(self, lost: List[int]) -> str:
        names = ', '.join(str(r) for r in lost)
        store = ('the rendezvous store at '
                 f"{os.environ.get('MASTER_ADDR')}:"
                 f"{os.environ.get('MASTER_PORT')} is unreachable, "
                 if self._store_lost_at is not None else '')
        return (
            f'Rank{"s" if len(lost) > 1 else ""} {names} of {self.world_size}'
            f' stopped ({store}no heartbeat for more than {self.timeout:.0f}'
            f' s): killed, out of memory, or its machine failed. Rank '
            f'{self.rank} stops too. Look at the log of rank {lost[0]} for '
            'the cause, then restart the job with --resume: it continues '
            'from the last complete checkpoint.')

    def _beats_so_far(self) -> Dict[int, int]:
        """Each other rank's heartbeat count as the store holds it now, or
        as this thread last saw it when the store cannot be read."""
        try:
            return {rank: self.store.add(self._key('heartbeat', rank), 0)
                    for rank in range(self.world_size) if rank != self.rank}
        except Exception:
            return {rank: count for rank, (count, _, _)
                    in dict(self._seen).items()}

    def wait_for_verdict(self) -> List[int]:
        """After an error here: wait until every other rank has either beaten
        again or been silent for ``timeout``; the lost ones.

        "Again" is against the store's count at the error, not against what
        this thread had read by then: a rank's last beat before it died may
        reach this thread only after the error, and is no sign of life."""
        since = time.monotonic()
        beaten = self._beats_so_far()
        while time.monotonic() - since < self.timeout + 2 * self.interval:
            lost = self.lost_ranks()
            if lost:
                return lost
            seen = dict(self._seen)
            alive = all(done or count > beaten.get(rank, -1)
                        for rank, (count, _, done) in seen.items())
            if alive and len(seen) == self.world_size - 1:
                return []
            time.sleep(self.interval)
        return self.lost_ranks()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._beat()
            lost = self.lost_ranks()
            now = time.monotonic()
            if not lost:
                self._lost_at = None
            elif self._lost_at is None:
                self._lost_at = now
            elif now - self._lost_at > self.timeout and \
                    not self._stop.is_set():
                # the training thread got no error: it waits for the lost
                # rank in a collective
                print(f'LostRankError: {self.message(lost)}',
                      file=sys.stderr, flush=True)
                os._exit(EXIT_CODE)

    def stop(self) -> None:
        """This rank is done: the others no longer wait for its beat."""
        self._stop.set()
        try:
            self.store.add(self._key('done', self.rank), 1)
        except Exception:
            pass


@contextmanager
def watch_ranks():
    """Run the block under a :class:`RankWatchdog` in multi-process runs;
    an error raised while a rank is lost becomes :class:`LostRankError`."""
    watchdog = RankWatchdog.for_this_job()
    if watchdog is None:
        yield
        return
    try:
        yield
    except Exception as error:
        lost = watchdog.wait_for_verdict()
        watchdog._stop.set()  # not done: the others are to notice
        if lost:
            raise LostRankError(watchdog.message(lost)) from error
        raise
    watchdog.stop()
