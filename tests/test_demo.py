"""tools/run_demo.sh, the README's first command, shows learning: the
trained model's VOC mAP is well above the untrained model's."""
import os.path as osp
import re
import subprocess

import pytest

from e2e_utils import REPO, tool_env

pytestmark = pytest.mark.slow
RESULT = re.compile(r'DEMO RESULT .*untrained ([\d.]+) -> trained ([\d.]+)')


def test_demo_trains_mona_well_above_the_untrained_baseline(tmp_path):
    # run outside the repository: data and work_dirs go to the tmp dir
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'tools', 'run_demo.sh')], cwd=tmp_path,
        env=tool_env(), capture_output=True, text=True, timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    match = RESULT.search(proc.stdout)
    assert match, proc.stdout[-3000:]
    untrained, trained = map(float, match.groups())
    assert trained >= 0.3 and trained >= untrained + 0.25, \
        (untrained, trained)
    # the parameter report of tools/analysis/count_params.py
    assert 'Mona' in proc.stdout
    assert (tmp_path / 'data/toy/VOCdevkit/VOC2007/JPEGImages').is_dir()
