"""The README's two commands, tools/setup_env.sh and the interpreter the
shell scripts under tools/ run."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

from e2e_utils import REPO, python3_shim
from test_demo import DEMO_COMMAND

TOOLS = osp.join(REPO, 'tools')
SETUP = 'bash tools/setup_env.sh'


def readme_commands():
    """The commands of the README's "Two commands" block, comments dropped."""
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    section = text.split('## Two commands', 1)[1]
    block = re.search(r'```bash\n(.*?)```', section, re.S).group(1)
    return [line.strip() for line in block.splitlines()
            if line.strip() and not line.strip().startswith('#')]


def ci_commands():
    with open(osp.join(REPO, '.ci', 'run')) as f:
        return [line.strip() for line in f
                if line.strip() and not line.strip().startswith('#')]


def test_readme_states_two_commands_that_ci_and_the_demo_test_run():
    setup_and_demo, setup_and_tests = readme_commands()
    # the first: set-up, then the demo exactly as tests/test_demo.py runs it
    assert setup_and_demo == f'{SETUP} && {" ".join(DEMO_COMMAND)}'
    # the second: the set-up with the test tools; .ci/run runs it, as
    # written, in its fresh environment
    assert setup_and_tests.startswith(f'{SETUP} --tests && ')
    assert setup_and_tests in ci_commands()


def test_ci_runs_in_a_new_virtual_environment_it_deletes():
    lines = ci_commands()
    venv = next(i for i, line in enumerate(lines) if '-m venv' in line)
    activate = next(i for i, line in enumerate(lines)
                    if line.startswith('source') and 'bin/activate' in line)
    test = lines.index(readme_commands()[1])
    assert venv < activate < test
    assert any(line.startswith('trap') and 'rm -rf' in line for line in lines)


def shell_scripts():
    return sorted(name for name in os.listdir(TOOLS) if name.endswith('.sh')
                  and name not in ('_python.sh', 'setup_env.sh'))


@pytest.mark.parametrize('name', shell_scripts())
def test_tool_scripts_take_the_interpreter_from_python_sh(name):
    with open(osp.join(TOOLS, name)) as f:
        code = [line for line in f if not line.lstrip().startswith('#')]
    assert any('_python.sh' in line and line.lstrip().startswith('source')
               for line in code), f'{name} does not source tools/_python.sh'
    bare = [line for line in code
            if re.search(r'(^|[\s;(|&])python3?(\s|$)', line)]
    assert not bare, f'{name} calls a bare python: {bare}'


def resolve_python(repo, path, **env):
    """$PYTHON after sourcing ``repo``/tools/_python.sh with this PATH."""
    env = dict(PATH=path, **env)
    proc = subprocess.run(
        ['/bin/bash', '-c',
         f'source {repo}/tools/_python.sh && echo "$PYTHON"'],
        env=env, capture_output=True, text=True)
    return proc.returncode, proc.stdout.strip(), proc.stderr


def test_python_sh_uses_the_setup_record_then_python3(tmp_path):
    repo, bin_dir = tmp_path / 'repo', tmp_path / 'bin'
    (repo / 'tools').mkdir(parents=True)
    bin_dir.mkdir()
    shutil.copy(osp.join(TOOLS, '_python.sh'), repo / 'tools')
    for tool in ('dirname', 'cat'):
        os.symlink(shutil.which(tool), bin_dir / tool)
    # no python at all: a clear error
    code, _, err = resolve_python(repo, str(bin_dir))
    assert code == 1 and 'tools/setup_env.sh' in err
    # only python3 on PATH (no `python`): python3
    python3 = python3_shim(bin_dir)
    assert resolve_python(repo, str(bin_dir))[1] == python3
    # the interpreter setup_env.sh recorded wins over PATH
    (repo / '.mmadapter-python').write_text(sys.executable + '\n')
    assert resolve_python(repo, str(bin_dir))[1] == sys.executable
    # a record of an interpreter that is gone is ignored
    (repo / '.mmadapter-python').write_text('/nonexistent/python3\n')
    assert resolve_python(repo, str(bin_dir))[1] == python3
    # PYTHON given explicitly wins over both
    assert resolve_python(repo, str(bin_dir), PYTHON='/x/py')[1] == '/x/py'


@pytest.mark.slow
def test_setup_env_rerun_installs_nothing_and_records_its_interpreter():
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(['bash', osp.join(TOOLS, 'setup_env.sh')],
                          env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = re.findall(r'stage (\d)/5 [^:\n]*: (.*) in \d+m\d+s',
                        proc.stdout)
    assert [s for s, _ in stages] == ['1', '2', '3', '4', '5'], proc.stdout
    for number, outcome in stages:
        assert 'already installed' in outcome or 'left alone' in outcome, \
            (number, outcome)
    assert 'environment ready' in proc.stdout
    with open(osp.join(REPO, '.mmadapter-python')) as f:
        assert osp.realpath(f.read().strip()) == osp.realpath(sys.executable)


def test_setup_env_refuses_a_torch_outside_the_supported_range(tmp_path):
    """An existing environment's torch is never replaced: one outside the
    supported range stops the set-up, naming the range, before anything
    is installed."""
    fake = tmp_path / 'site'
    (fake / 'torch').mkdir(parents=True)
    (fake / 'torch' / '__init__.py').write_text("__version__ = '2.2.0'\n")
    (fake / 'torch-2.2.0.dist-info').mkdir()
    (fake / 'torch-2.2.0.dist-info' / 'METADATA').write_text(
        'Metadata-Version: 2.1\nName: torch\nVersion: 2.2.0\n')
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(fake))
    proc = subprocess.run(['bash', osp.join(TOOLS, 'setup_env.sh')],
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert 'torch 2.2.0 is installed, but mmadapter supports ' \
        'torch>=2.5,<2.15' in proc.stdout
    assert 'stage 2/5' not in proc.stdout  # nothing installed after it


def test_setup_env_takes_only_the_options_it_knows():
    proc = subprocess.run(['bash', osp.join(TOOLS, 'setup_env.sh'),
                           '--test'], capture_output=True, text=True,
                          timeout=60, env=dict(os.environ,
                                               PYTHON=sys.executable))
    assert proc.returncode == 2
    assert 'usage: bash tools/setup_env.sh [--tests]' in proc.stderr
