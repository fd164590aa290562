"""Helpers of the tests that run the tools: the toy data generator, tool
subprocesses, pointing toy configs at temporary data, reading metrics."""
import functools
import glob
import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List, Optional

import pytest
from mmengine.config import Config

from mmadapter.datasets.config_entries import (
    EVALUATORS,
    LOADERS,
    config_datasets,
)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
TOY_CONFIGS = dict(
    voc=osp.join(REPO, 'configs', 'toy', 'retinanet_swin_toy_voc.py'),
    coco=osp.join(REPO, 'configs', 'toy', 'cascade_swin_toy_coco.py'),
    ade20k=osp.join(REPO, 'configs', 'toy', 'upernet_swin_toy_ade20k.py'),
    flowers102=osp.join(REPO, 'configs', 'toy', 'swin_toy_flowers102.py'),
    pets=osp.join(REPO, 'configs', 'toy', 'swin_toy_pets.py'),
    voc2007=osp.join(REPO, 'configs', 'toy', 'swin_toy_voc2007.py'))


def script_module(path: str):
    """A script of the repository (``path`` relative to it, e.g.
    'tools/analysis/dry_run.py') as a module."""
    name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.lru_cache()
def toy_data():
    """tools/misc/make_toy_data.py as a module."""
    return script_module('tools/misc/make_toy_data.py')


def toy_config(name: str) -> str:
    path = TOY_CONFIGS[name]
    if not osp.isfile(path):
        pytest.fail(f'Toy config {path} is missing.')
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def tool_env(**extra) -> Dict[str, str]:
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO] + [p for p in [env.get('PYTHONPATH')] if p])
    env.update(extra)
    return env


def python3_shim(bin_dir) -> str:
    """Write ``bin_dir``/python3 running this interpreter (a wrapper, not a
    symlink, so a virtual environment stays active) and return its path."""
    os.makedirs(bin_dir, exist_ok=True)
    shim = osp.join(str(bin_dir), 'python3')
    with open(shim, 'w') as f:
        f.write(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    os.chmod(shim, 0o755)
    return shim


def run_tool(args: List[str], cwd: str, timeout: float = 900,
             check: bool = True, env: Optional[dict] = None):
    """Run ``args`` (a script under tools/ and its arguments; .sh scripts
    with bash, others with this Python) and return the finished process."""
    script = osp.join(TOOLS, args[0])
    command = (['bash', script] if script.endswith('.sh') else
               [sys.executable, script]) + [str(a) for a in args[1:]]
    proc = subprocess.run(command, cwd=cwd, env=env or tool_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{" ".join(command)} exited with {proc.returncode}:\n'
                    f'--- stdout (end) ---\n{proc.stdout[-4000:]}\n'
                    f'--- stderr (end) ---\n{proc.stderr[-6000:]}')
    return proc


def data_root_options(config: str, data_root: str) -> List[str]:
    """``--cfg-options`` entries that point every dataset of ``config``
    (and evaluator annotation files under the old root) at ``data_root``."""
    cfg = Config.fromfile(config)
    options, old_roots = [], set()
    for key, dataset in config_datasets(cfg, LOADERS):
        old_roots.add(dataset.get('data_root') or '')
        options.append(f'{key}.data_root={data_root}')
    for evaluator in EVALUATORS:
        metric = cfg.get(evaluator)
        ann_file = metric.get('ann_file') if isinstance(metric, dict) \
            else None
        for old in old_roots:
            if ann_file and old and ann_file.startswith(old):
                new = osp.join(data_root, ann_file[len(old):].lstrip('/'))
                options.append(f'{evaluator}.ann_file={new}')
                break
    return options


def short_schedule_options(iters: int) -> List[str]:
    """Train ``iters`` iterations (iteration-based toy configs), validate
    and save a checkpoint at the end, log every iteration."""
    return [f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
            f'default_hooks.checkpoint.interval={iters}',
            'default_hooks.logger.interval=1']


def last_checkpoint(work_dir: str) -> str:
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def logged_metrics(work_dir: str) -> dict:
    """Metrics of the latest tools/test.py run in ``work_dir``.

    In a multi-process test every rank writes this file (mmengine's
    LoggerHook), so it may end in the tail of a longer write; the metrics
    are the same on all ranks, and the first JSON object holds them.
    """
    runs = sorted(glob.glob(osp.join(work_dir, '*', '*.json')))
    if not runs:
        pytest.fail(f'No metrics file under {work_dir}.')
    with open(runs[-1]) as f:
        return json.JSONDecoder().raw_decode(f.read())[0]


def validation_metrics(work_dir: str) -> List[dict]:
    """Validation entries of the training log (vis_data/scalars.json)."""
    entries = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data',
                                   'scalars.json')):
        with open(path) as f:
            entries += [json.loads(line) for line in f if line.strip()]
    return [e for e in entries if not any(k.startswith(('loss', 'lr'))
                                          for k in e)]
