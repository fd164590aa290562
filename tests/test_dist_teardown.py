"""A finished multi-process run frees its gloo backend before interpreter
exit: no gloo worker thread is left for interpreter finalisation to end
(which aborted about one two-process CPU run in ten after a successful run,
"terminate called without an active exception")."""
import subprocess
import sys

import pytest

from e2e_utils import (
    data_root_options,
    free_port,
    run_tool,
    tool_env,
    toy_config,
    toy_data,
)

pytestmark = pytest.mark.slow

PROBE = r'''
import os, sys
from mmadapter.cli import commands as cli

def gloo_threads():
    names = [open(f'/proc/self/task/{t}/comm').read().strip()
             for t in os.listdir('/proc/self/task')]
    return sum('gloo' in name for name in names)

command, args = sys.argv[1], sys.argv[2:]
getattr(cli, command)(args + ['--launcher', 'pytorch'])
print('gloo threads left:', gloo_threads())
'''


def run_probe(command, args, tmp_path):
    env = tool_env(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                   MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
                   OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, '-c', PROBE, command, *map(str, args)], env=env,
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert 'CPUDistributedDataParallel' in proc.stdout + proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_a_finished_run_leaves_no_gloo_thread_alive(tmp_path):
    # tools/test.py, where the abort was seen (train() ends the same way)
    data = toy_data().make_voc(str(tmp_path / 'data'), num_train=1,
                               num_val=1, img_size=(160, 128))
    config = toy_config('voc')
    checkpoint = tmp_path / 'untrained.pth'
    run_tool(['misc/untrained_checkpoint.py', config, checkpoint],
             cwd=str(tmp_path))
    assert run_probe('test', [config, checkpoint, '--work-dir',
                              tmp_path / 'test', '--cfg-options',
                              *data_root_options(config, data['root'])],
                     tmp_path) == 'gloo threads left: 0'
