"""The code passes the project's lint (ruff.toml: pycodestyle, pyflakes and
import order, as OpenMMLab's flake8 + isort set-up checks), so CI lints."""
import os.path as osp
import shutil
import subprocess
import sys

from e2e_utils import REPO


def test_the_code_passes_ruff():
    # the test environment's ruff (requirements/tests.txt), else PATH's
    ruff = shutil.which('ruff', path=osp.dirname(sys.executable)) or \
        shutil.which('ruff')
    assert ruff, 'ruff is not installed: bash tools/setup_env.sh --tests'
    proc = subprocess.run([ruff, 'check', '--output-format', 'concise', '.'],
                          cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
