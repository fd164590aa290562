"""The fresh processes the CPU measurements run in, and the settings of
glibc's allocator each starts with (glibc reads them once, at start-up)."""
import multiprocessing as mp
import os

import torch

from bench_timing import flush_denormals

#: What the CPU memory runs' processes start with unless ``--heap-rss``:
#: every allocation of 128 KiB or more its own mapping, returned to the
#: system when freed, so that peak RSS counts the tensors alive at the peak
#: (as torch.cuda.max_memory_allocated does) and not the holes glibc's heap
#: keeps between them, which move a margin by +-0.03 from run to run.
LIVE_TENSORS_ENV = {'MALLOC_MMAP_THRESHOLD_': '131072'}

#: What the CPU timing processes start with unless ``--default-heap``:
#: glibc keeps every freed block for reuse (no allocation is a mapping of
#: its own, the heap's top is never given back), so that once the first
#: steps have grown the heap a step touches no page the process has not
#: touched before, as PyTorch's CUDA caching allocator reuses its blocks.
#: With glibc's defaults, tensors of 32 MiB or more (its mmap threshold's
#: ceiling: Swin-B 512's MLP hidden layer at stage 1) are mapped when
#: allocated and unmapped when freed, and the freed top of the heap goes
#: back to the system past a threshold, so each step faults those pages in
#: again: ~2 us a page on one thread of this project's AMD machine (~0.5 ms
#: per MiB, 2.5 times what `gelu_backward` takes to compute one), charged
#: to whichever operator first writes the fresh tensor (`gelu_backward`,
#: `fill_`) and varying with where the heap's top happens to lie.
STEADY_HEAP_ENV = {'MALLOC_MMAP_MAX_': '0',
                   'MALLOC_TRIM_THRESHOLD_': str(2 ** 40)}


def in_subprocess(fn, *args, env=None):
    """Run ``fn(*args, queue)`` in a fresh process, with ``env`` added to
    its environment, and return what it puts on ``queue``."""
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=fn, args=(*args, queue))
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc.start()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    result = queue.get()
    proc.join()
    return result


def _call_as_parent(fn, args, threads, keep_denormals, queue):
    torch.set_num_threads(threads)
    flush_denormals(torch.device('cpu'), keep_denormals)
    queue.put(fn(*args))


def run_timed(fn, *args, device, keep_denormals=False, default_heap=False):
    """``fn(*args)``; on CPU, unless ``default_heap``, in a fresh process
    started with :data:`STEADY_HEAP_ENV`, taking this process's torch
    thread count and subnormal flushing."""
    if torch.device(device).type != 'cpu' or default_heap:
        return fn(*args)
    return in_subprocess(_call_as_parent, fn, args, torch.get_num_threads(),
                         keep_denormals, env=STEADY_HEAP_ENV)


def heap_kind(device, default_heap=False):
    """How the timing processes' allocator was set, for the report."""
    if torch.device(device).type != 'cpu':
        return None
    if default_heap:
        return ('glibc\'s defaults (large tensors mapped and unmapped each '
                'step, their pages faulted in again)')
    return ('freed memory kept for reuse (MALLOC_MMAP_MAX_=0, '
            'MALLOC_TRIM_THRESHOLD_=2**40: no page faulted in again after '
            'the first steps, as with CUDA\'s caching allocator)')
