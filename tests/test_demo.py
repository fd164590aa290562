"""tools/run_demo.sh, the README's first command, shows learning: the
trained model's VOC mAP is well above the untrained model's."""
import os
import os.path as osp
import re
import shutil
import subprocess

import pytest

from e2e_utils import REPO, python3_shim, tool_env

pytestmark = pytest.mark.slow
# The README's first command runs this after tools/setup_env.sh (checked by
# tests/test_setup_scripts.py); from the repository root, as written there.
DEMO_COMMAND = ['bash', 'tools/run_demo.sh']
RESULT = re.compile(r'DEMO RESULT .*untrained ([\d.]+) -> trained ([\d.]+)')


def only_python3_on_path(bin_dir) -> str:
    """A PATH with this interpreter as ``python3`` and no ``python`` (as on
    a stock Debian machine): the scripts must not call a bare python."""
    python3_shim(bin_dir)
    return os.pathsep.join(
        [str(bin_dir), '/usr/local/bin', '/usr/bin', '/bin'])


def test_demo_trains_mona_well_above_the_untrained_baseline(tmp_path):
    # run outside the repository: data and work_dirs go to the tmp dir
    run_dir = tmp_path / 'run'
    run_dir.mkdir()
    env = tool_env(PATH=only_python3_on_path(tmp_path / 'bin'))
    assert shutil.which('python', path=env['PATH']) is None
    proc = subprocess.run(
        [DEMO_COMMAND[0], osp.join(REPO, DEMO_COMMAND[1])], cwd=run_dir,
        env=env, capture_output=True, text=True, timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    match = RESULT.search(proc.stdout)
    assert match, proc.stdout[-3000:]
    untrained, trained = map(float, match.groups())
    assert trained >= 0.3 and trained >= untrained + 0.25, \
        (untrained, trained)
    # the parameter report of tools/analysis/count_params.py
    assert 'Mona' in proc.stdout
    assert (run_dir / 'data/toy/VOCdevkit/VOC2007/JPEGImages').is_dir()
