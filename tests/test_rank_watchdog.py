"""The rank watchdog's verdict after an error, with a store in memory."""
import threading
import time

from mmadapter.engine.rank_watchdog import RankWatchdog


class MemoryStore:
    """The one TCPStore call the watchdog makes: ``add``."""

    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()

    def add(self, key, amount):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + amount
            return self.counts[key]


def verdict(other_rank_beats):
    """Rank 0's verdict after an error, while rank 1 beats (or not) every
    0.05 s, rank 0's watchdog reading the store every 0.05 s."""
    store = MemoryStore()
    watchdog = RankWatchdog(0, 2, store, timeout=0.5, interval=0.05)
    store.add('mmadapter/heartbeat/1', 5)
    watchdog._beat()  # rank 0 has seen rank 1's fifth beat
    # rank 1's sixth beat lands before the error, unread by rank 0
    store.add('mmadapter/heartbeat/1', 1)
    stop = threading.Event()

    def beats():
        while not stop.wait(0.05):
            watchdog._beat()
            if other_rank_beats:
                store.add('mmadapter/heartbeat/1', 1)

    thread = threading.Thread(target=beats, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        return watchdog.wait_for_verdict(), time.monotonic() - start
    finally:
        stop.set()
        thread.join()


def test_a_beat_from_before_the_error_is_no_sign_of_life():
    """Rank 1 beat once more and died before rank 0's error; rank 0 reads
    that beat only afterwards, and still names rank 1 as lost once it has
    been silent for the timeout."""
    lost, waited = verdict(other_rank_beats=False)
    assert lost == [1]
    assert 0.4 < waited < 1.5


def test_a_rank_beating_after_the_error_is_alive_at_once():
    lost, waited = verdict(other_rank_beats=True)
    assert lost == []
    assert waited < 0.4
