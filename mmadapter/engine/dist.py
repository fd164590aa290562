"""Multi-process training and testing on machines without CUDA (gloo).

mmengine 0.10.7 cannot launch distributed jobs on CPU: ``init_dist`` calls
``torch.cuda.set_device`` whatever the backend, and the Runner's default DDP
wrapper passes CUDA ``device_ids``. :func:`setup_cpu_distributed` works
around both before the Runner is built, and only when CUDA is unavailable:

* it initialises a gloo process group itself from the launcher's environment
  (the Runner skips ``init_dist`` when a process group exists);
* it sets ``model_wrapper_cfg`` to :class:`CPUDistributedDataParallel`, the
  stock wrapper without ``device_ids``.

With CUDA nothing is changed: mmengine's stock NCCL path runs.
"""
import atexit
import datetime
import gc
import os
import subprocess
from typing import Dict

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel

from mmadapter.registry import MODEL_WRAPPERS

# Wrappers whose only CUDA assumption is ``device_ids``: replaced on CPU.
_STOCK_DDP_TYPES = (None, 'MMDistributedDataParallel',
                    'mmengine.MMDistributedDataParallel')


@MODEL_WRAPPERS.register_module()
class CPUDistributedDataParallel(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` for modules on the CPU.

    The Runner passes ``device_ids=[LOCAL_RANK]`` to every DDP wrapper; DDP
    rejects ``device_ids`` for CPU modules, so they are dropped here.
    Parameters with ``requires_grad=False`` (a frozen backbone) are not
    tracked by DDP, so ``find_unused_parameters`` is not needed for them.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        super().__init__(
            module=module, device_ids=None if on_cpu else device_ids, **kwargs)


def _slurm_master_addr() -> str:
    nodes = os.environ['SLURM_NODELIST']
    hosts = subprocess.run(['scontrol', 'show', 'hostnames', nodes],
                           capture_output=True, text=True, check=True)
    return hosts.stdout.split()[0]


def launcher_env(launcher: str) -> Dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT of this
    process, read from what ``launcher`` sets (torchrun, srun, mpirun)."""
    env = os.environ
    if launcher == 'pytorch':
        names = dict(RANK='RANK', WORLD_SIZE='WORLD_SIZE',
                     LOCAL_RANK='LOCAL_RANK')
    elif launcher == 'slurm':
        names = dict(RANK='SLURM_PROCID', WORLD_SIZE='SLURM_NTASKS',
                     LOCAL_RANK='SLURM_LOCALID')
    elif launcher == 'mpi':
        names = dict(RANK='OMPI_COMM_WORLD_RANK',
                     WORLD_SIZE='OMPI_COMM_WORLD_SIZE',
                     LOCAL_RANK='OMPI_COMM_WORLD_LOCAL_RANK')
    else:
        raise ValueError(f'Unknown launcher {launcher!r}; expected pytorch, '
                         'slurm or mpi.')
    missing = [source for source in names.values() if source not in env]
    if missing:
        raise RuntimeError(
            f'--launcher {launcher} was given, but the environment lacks '
            f'{", ".join(missing)}. Start the job with its launcher (for '
            "'pytorch': tools/dist_train.sh or torchrun; for 'slurm': "
            "tools/slurm_train.sh; for 'mpi': mpirun), or use --launcher "
            'none for a single process.')
    result = {name: env[source] for name, source in names.items()}
    if 'MASTER_ADDR' in env:
        result['MASTER_ADDR'] = env['MASTER_ADDR']
    elif launcher == 'slurm':
        result['MASTER_ADDR'] = _slurm_master_addr()
    elif launcher == 'mpi':
        raise RuntimeError('--launcher mpi needs MASTER_ADDR in the '
                           'environment (the address of rank 0).')
    result['MASTER_PORT'] = env.get('MASTER_PORT', '29500')
    return result


def init_gloo_process_group(launcher: str, timeout=None) -> None:
    """Initialise the default process group with gloo (``timeout`` in
    seconds, as in ``env_cfg.dist_cfg``)."""
    env = launcher_env(launcher)
    os.environ.update(env)
    kwargs = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    torch_dist.init_process_group(
        backend='gloo', rank=int(env['RANK']),
        world_size=int(env['WORLD_SIZE']), **kwargs)
    # After an error, at least drop the group from the world while the
    # interpreter is alive; a finished run ends with end_distributed_run().
    atexit.register(destroy_process_group)


def destroy_process_group() -> None:
    if torch_dist.is_initialized():
        torch_dist.destroy_process_group()


def end_distributed_run() -> None:
    """End a finished multi-process run on every rank, in order: free what
    the caller dropped (the Runner's DDP wrapper holds the group), wait for
    every rank (none tears down while a peer still talks to it), destroy the
    group while the interpreter is fully alive.

    A gloo backend still alive at interpreter exit is freed during
    finalisation, with its worker and transport threads still running, and
    about 1 run in 10 of the two-process CPU test then aborted after a
    successful run ("terminate called without an active exception", exit
    code -6; reproduced at the same rate by a bare DDP script, and gone once
    the backend is freed before exit). The Runner's DDP wrapper holds the
    backend, so destroying the group at exit, with the Runner alive, did not
    free it; freed here, the backend joins its threads first. (Anything else
    holding the group keeps the backend alive just the same:
    ``torch.distributed.nn.functional`` binds ``group.WORLD`` into default
    arguments when imported, harmless here because ``mmengine.model``
    imports it before any group exists.)
    """
    if not torch_dist.is_initialized():
        return
    gc.collect()
    torch_dist.barrier()
    torch_dist.destroy_process_group()
    gc.collect()


def setup_cpu_distributed(cfg: Config, launcher: str) -> bool:
    """Prepare a distributed CPU run of ``cfg`` before its Runner is built.

    Returns True when it did (a launcher was given and CUDA is unavailable),
    False when the stock mmengine path applies and nothing was changed.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return False
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}) or {})
    backend = dist_cfg.get('backend', 'nccl')
    if backend != 'gloo':
        print_log(
            f"CUDA is not available: using the 'gloo' backend instead of "
            f"{backend!r} for --launcher {launcher}.", logger='current')
    if not torch_dist.is_initialized():
        init_gloo_process_group(launcher, timeout=dist_cfg.get('timeout'))
    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        cfg.model_wrapper_cfg = dict(
            type='mmadapter.CPUDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    elif wrapper_cfg.get('type') in _STOCK_DDP_TYPES:
        wrapper_cfg['type'] = 'mmadapter.CPUDistributedDataParallel'
    return True
