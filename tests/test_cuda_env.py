"""The CUDA side of set-up and of a run's start (mmadapter/cli/cuda_env.py):
each way a GPU machine can be unfit is named, with its fix, before anything
is built or trained. The machine is faked where this CPU machine cannot be
it (a driver, a wrapper nvcc of another version, a toolkit without the
cuSPARSE headers)."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from e2e_utils import REPO
from mmadapter.cli import cuda_env

CUDA_ENV = osp.join(REPO, 'mmadapter', 'cli', 'cuda_env.py')


def fake_toolkit(root, nvcc_release='13.0', cusparse=False):
    """A CUDA toolkit folder whose nvcc prints ``nvcc_release``."""
    os.makedirs(osp.join(root, 'bin'))
    os.makedirs(osp.join(root, 'include'))
    nvcc = osp.join(root, 'bin', 'nvcc')
    with open(nvcc, 'w') as f:
        f.write('#!/bin/sh\necho "Cuda compilation tools, release '
                f'{nvcc_release}, V{nvcc_release}.88"\n')
    os.chmod(nvcc, 0o755)
    open(osp.join(root, 'include', 'cuda_runtime.h'), 'w').close()
    if cusparse:
        open(osp.join(root, 'include', 'cusparse.h'), 'w').close()
    return str(root)


@pytest.fixture
def old_driver_machine(monkeypatch):
    """GPUs with driver 535 under a torch built for CUDA 13.0."""
    monkeypatch.delenv('CUDA_VISIBLE_DEVICES', raising=False)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(cuda_env, 'driver_version', lambda: '535.104.05')


def test_gpus_with_a_driver_too_old_for_torchs_cuda_are_named(
        old_driver_machine):
    reason = cuda_env.unusable_gpu_reason()
    assert 'driver 535.104.05' in reason
    assert 'CUDA 13.0, which needs driver >= 580.65.06' in reason
    assert 'CUDA_VISIBLE_DEVICES=' in reason  # the explicit CPU run


def test_gpus_hidden_on_purpose_ask_for_a_cpu_run(old_driver_machine,
                                                  monkeypatch):
    monkeypatch.setenv('CUDA_VISIBLE_DEVICES', '')
    assert cuda_env.unusable_gpu_reason() is None


def test_a_machine_without_gpus_runs_on_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(cuda_env, 'driver_version', lambda: None)
    monkeypatch.setattr(cuda_env.glob, 'glob', lambda pattern: [])
    assert cuda_env.unusable_gpu_reason() is None
    cuda_env.check_gpu_run(cuda_wanted=False)  # no error


def test_a_cpu_only_torch_on_a_gpu_machine_is_named(old_driver_machine,
                                                    monkeypatch):
    monkeypatch.setattr(torch.version, 'cuda', None)
    reason = cuda_env.unusable_gpu_reason()
    assert 'CPU-only build' in reason and 'pip install torch' in reason


def test_train_stops_before_the_runner_on_unusable_gpus(
        old_driver_machine, tmp_path):
    from mmadapter.cli import commands as cli
    config = osp.join(REPO, 'configs', 'toy', 'retinanet_swin_toy_voc.py')
    built = []
    original = cli.build_runner
    cli.build_runner = lambda cfg: built.append(cfg) or original(cfg)
    try:
        with pytest.raises(SystemExit) as error:
            cli.train([config, '--work-dir', str(tmp_path),
                       '--cfg-options', f'data_root={tmp_path}/none'])
    finally:
        cli.build_runner = original
    # named first, before the dataset (which does not exist) is looked at
    assert 'CudaEnvError' in str(error.value)
    assert 'driver 535.104.05' in str(error.value)
    assert not built


def test_a_wrapper_nvcc_leads_to_its_toolkit(tmp_path, monkeypatch):
    toolkit = fake_toolkit(tmp_path / 'cuda-13.0')
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    wrapper = bindir / 'nvcc'
    wrapper.write_text(f'#!/bin/sh\nexec {toolkit}/bin/nvcc "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.delenv('CUDA_HOME', raising=False)
    monkeypatch.delenv('CUDA_PATH', raising=False)
    monkeypatch.setenv('PATH', f'{bindir}:/usr/bin:/bin')
    assert cuda_env.cuda_home() == toolkit


def test_an_nvcc_of_another_major_version_is_refused(tmp_path, monkeypatch):
    toolkit = fake_toolkit(tmp_path / 'cuda-12.4', nvcc_release='12.4')
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    with pytest.raises(cuda_env.CudaEnvError) as error:
        cuda_env.check_nvcc_matches_torch(toolkit)
    assert 'nvcc 12.4' in str(error.value)
    assert 'built for CUDA 13.0' in str(error.value)
    assert 'Install a CUDA 13.x toolkit and set CUDA_HOME' in str(error.value)


def test_the_default_architectures_without_a_gpu_are_torchs_own(
        monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(torch._C, '_cuda_getArchFlags',
                        lambda: 'sm_80 sm_90 sm_120', raising=False)
    assert cuda_env.default_arch_list() == '8.0;9.0;12.0+PTX'
    monkeypatch.setattr(torch._C, '_cuda_getArchFlags', lambda: '',
                        raising=False)
    with pytest.raises(cuda_env.CudaEnvError, match='TORCH_CUDA_ARCH_LIST'):
        cuda_env.default_arch_list()


def test_cusparse_headers_come_from_torchs_nvidia_wheels(tmp_path,
                                                        monkeypatch):
    toolkit = fake_toolkit(tmp_path / 'cuda')
    site = tmp_path / 'site'
    (site / 'nvidia' / 'cu13' / 'include').mkdir(parents=True)
    (site / 'nvidia' / 'cu13' / 'include' / 'cusparse.h').write_text('')
    monkeypatch.setattr(sys, 'path', [str(site)])
    assert cuda_env.cuda_library_include_dirs(toolkit) == [
        str(site / 'nvidia' / 'cu13' / 'include')]
    # a toolkit that has them needs none
    full = fake_toolkit(tmp_path / 'full', cusparse=True)
    assert cuda_env.cuda_library_include_dirs(full) == []
    # neither: named, before a build that would stop at object 36
    monkeypatch.setattr(sys, 'path', [str(tmp_path / 'empty')])
    with pytest.raises(cuda_env.CudaEnvError, match='cusparse.h'):
        cuda_env.cuda_library_include_dirs(toolkit)


def test_build_env_keys_the_wheel_by_cuda_version_and_architectures(
        tmp_path, monkeypatch):
    toolkit = fake_toolkit(tmp_path / 'cuda', cusparse=True)
    monkeypatch.setenv('CUDA_HOME', toolkit)
    monkeypatch.setenv('TORCH_CUDA_ARCH_LIST', '8.0;9.0+PTX')
    monkeypatch.setattr(torch.version, 'cuda', '13.0')
    monkeypatch.setattr(cuda_env, 'unusable_gpu_reason', lambda: None)
    env = cuda_env.build_env()
    assert env['CUDA_HOME'] == toolkit
    assert env['TORCH_CUDA_ARCH_LIST'] == '8.0;9.0+PTX'
    assert env['MMCV_OPS_KEY'] == 'cuda13.0-sm80_90ptx'


def test_a_cpu_only_mmcv_is_named_where_the_run_uses_cuda(monkeypatch):
    import mmcv.ops
    if mmcv.ops.get_compiling_cuda_version() != 'not available':
        pytest.skip('this mmcv has CUDA ops')
    monkeypatch.setattr(cuda_env, 'unusable_gpu_reason', lambda: None)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 1)
    with pytest.raises(cuda_env.CudaEnvError) as error:
        cuda_env.check_gpu_run(cuda_wanted=True)
    assert 'built without CUDA ops' in str(error.value)
    assert 'FORCE_CUDA=1 bash tools/setup_env.sh' in str(error.value)


def test_the_script_runs_by_path_before_mmcv_exists(tmp_path):
    """tools/setup_env.sh runs it before mmcv is installed: it must not
    import the package (whose __init__ imports mmcv)."""
    toolkit = fake_toolkit(tmp_path / 'cuda', nvcc_release='12.4',
                           cusparse=True)
    env = dict(os.environ, CUDA_HOME=toolkit, TORCH_CUDA_ARCH_LIST='9.0',
               FORCE_CUDA='1', PYTHONPATH='')
    proc = subprocess.run(
        [sys.executable, '-X', 'importtime', CUDA_ENV, 'build-env'],
        env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert 'nvcc 12.4' in proc.stderr
    imported = {line.split('|')[-1].strip().split('.')[0]
                for line in proc.stderr.splitlines() if '|' in line}
    assert 'mmcv' not in imported and 'mmadapter' not in imported
