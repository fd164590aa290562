"""Reproduce the gloo abort at interpreter exit (issue 11) with a bare
two-process DDP script, per way of ending the run:

    for i in $(seq 40); do
      python -m torch.distributed.run --nproc_per_node=2 \
          benchmarks/gloo_teardown_repro.py MODE 2>&1 | grep -c 'terminate called'
    done

MODE: ``none`` (the group is never destroyed), ``atexit`` (destroyed at
exit while DDP still holds the backend), ``barrier`` (barrier + destroy,
DDP still holds it), ``freed`` (``torch.distributed.nn.functional``
imported before the group exists, so nothing but DDP holds the backend;
DDP deleted, barrier, destroy: the backend and its threads are gone before
exit). Results are in benchmarks/SETUP_AND_TEARDOWN.md.
"""
import gc
import sys

import torch

MODE = sys.argv[1]
if MODE == 'freed':
    import torch.distributed.nn.functional  # noqa: F401  (defaults = None)
import torch.distributed as dist  # noqa: E402
import torch.nn as nn  # noqa: E402

dist.init_process_group('gloo')
model = nn.parallel.DistributedDataParallel(nn.Linear(64, 64))
for _ in range(3):
    model(torch.randn(8, 64)).sum().backward()
metrics = [{'mAP': 0.5}] if dist.get_rank() == 0 else [None]
dist.broadcast_object_list(metrics, src=0)  # the last collective of a test
if MODE == 'freed':
    del model
    gc.collect()
if MODE in ('barrier', 'freed'):
    dist.barrier()
if MODE != 'none':
    dist.destroy_process_group()
    gc.collect()
