"""Timings taken in turn in one process, and the facts of the machine that
took them."""
import os
import platform
import resource
import statistics
import time

import torch


def flush_denormals(device, keep: bool) -> bool:
    """On CPU, flush subnormal floats to zero unless ``keep``; whether they
    are flushed.

    An x86 core takes a microcode assist, tens of times an operation's
    cost, for every subnormal operand (below 1.2e-38 in float32). Training
    steps produce them where nothing is wrong: Swin's shifted-window mask
    (-100 before the softmax: exp(-100) is subnormal), and in GELU outputs
    of inputs below about -13, which a randomly initialised stream gives
    (Mona's filter passes the raw stream, x * gammax, to its projection).
    Which operators hit them depends on the random values, not on the
    methods' costs, and a GPU runs them at full speed; so the CPU
    measurements flush them (``torch.set_flush_denormal``), as
    ``--keep-denormals`` does not.
    """
    if device.type != 'cpu' or keep:
        return False
    return torch.set_flush_denormal(True)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def minor_page_faults():
    """Pages this process has faulted in so far without reading a disk."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def round_robin_samples(calls, device, repeats, warmup_rounds=1,
                        untimed_before=0, faults=None):
    """Seconds of each of ``calls`` (name -> function) in each of
    ``repeats`` timed rounds (lists in round order); with a dict ``faults``,
    the minor page faults of each timed call go into it the same way.

    One round calls every function once; a change in the machine's speed
    during the run (other tenants, clock changes) then hits all of them
    alike instead of skewing a ratio, and each round's own ratios compare
    calls made seconds apart. ``untimed_before`` untimed calls of the same
    function come right before each timed one: the timed call then finds
    its memory as a training run does, touched a step ago. Memory left
    untouched for seconds, while the other functions ran, costs more to
    touch again on some machines (this project's CPU machine: 1.4 GB in
    0.07 s touched again at once, 0.19 s after 5 s, 0.25 s after 20 s),
    which slows most the function that touches the most memory.
    """
    times = {name: [] for name in calls}
    if faults is not None:
        faults.update({name: [] for name in calls})
    for round_ in range(warmup_rounds + repeats):
        for name, fn in calls.items():
            for _ in range(untimed_before):
                fn()
            sync(device)
            faults_before = minor_page_faults()
            start = time.perf_counter()
            fn()
            sync(device)
            if round_ >= warmup_rounds:
                times[name].append(time.perf_counter() - start)
                if faults is not None:
                    faults[name].append(minor_page_faults() - faults_before)
    return times


def round_robin_times(calls, device, repeats, warmup_rounds=1,
                      untimed_before=0):
    """Median seconds of each of ``calls``, timed in turn
    (:func:`round_robin_samples`)."""
    samples = round_robin_samples(calls, device, repeats, warmup_rounds,
                                  untimed_before)
    return {name: statistics.median(t) for name, t in samples.items()}


def machine_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{cpu}, {os.cpu_count()} cores'


def load_average():
    try:
        return ' '.join(f'{v:.2f}' for v in os.getloadavg())
    except OSError:
        return None
