"""Peak memory of training steps: CUDA's peak allocation, or on CPU the
peak resident memory of a fresh process counting live tensors."""
import resource

import torch

from bench_models import (
    ARCHS,
    build_backbone,
    make_input,
    make_optimizer,
    train_step_fn,
)
from bench_timing import flush_denormals, sync


def current_rss_kb():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * resource.getpagesize() // 1024


def measure_peak_memory(bench, method, device_name, keep_denormals=False,
                        queue=None):
    """Peak memory (MiB) of training steps, and the trainable count.

    Counts everything training holds: weights, gradients, optimizer state
    and activations (CUDA: peak allocated; CPU: growth of the peak resident
    set over the process's state before the model was built, so each method
    runs in a fresh process).
    """
    torch.manual_seed(0)
    device = torch.device(device_name)
    flush_denormals(device, keep_denormals)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base_kb = current_rss_kb()
    model = build_backbone(ARCHS[bench['arch']](), method,
                           bench.get('impl')).to(device).train()
    step = train_step_fn(model, make_input(bench, device),
                         make_optimizer(model), bench['amp'])
    for _ in range(2):  # the second step holds the optimizer state too
        step()
    sync(device)
    if device.type == 'cuda':
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss -
                base_kb) / 1024
    result = dict(peak_mib=peak,
                  trainable=sum(p.numel() for p in model.parameters()
                                if p.requires_grad))
    if queue is not None:
        queue.put(result)
    return result


def memory_kind(device, heap_rss=False):
    if device.type == 'cuda':
        return 'torch.cuda.max_memory_allocated'
    kind = 'peak RSS growth of a fresh process from before the model is built'
    if heap_rss:
        return kind + ' (glibc\'s default thresholds: heap holes included)'
    return kind + (', every allocation of 128 KiB or more its own mapping '
                   '(MALLOC_MMAP_THRESHOLD_=131072): the tensors alive at the '
                   'peak, as torch.cuda.max_memory_allocated counts them')
