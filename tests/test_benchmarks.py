"""The benchmark scripts keep working (quick mode; no timing assertions)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
pytestmark = pytest.mark.slow


def run(args, **kwargs):
    return subprocess.run([sys.executable, *args], cwd=REPO, check=True,
                          capture_output=True, text=True, timeout=900,
                          **kwargs)


def test_quick_benchmark_writes_its_tables(tmp_path):
    run(['benchmarks/run_benchmarks.py', '--quick', '--device', 'cpu',
         '--out-dir', str(tmp_path)])
    with open(tmp_path / 'results_quick_cpu_64.json') as f:
        results = json.load(f)
    assert set(results['train']) >= {'Full', 'Mona', 'LoRA', 'AdaptFormer',
                                     'Houlsby', 'LoRand'}
    assert results['train']['Full']['time_ratio'] == 1.0
    assert results['train']['Mona']['trainable'] < \
        results['train']['Full']['trainable']
    assert results['inference']['LoRA (merged)']['seconds'] > 0
    table = (tmp_path / 'RESULTS_quick_cpu_64.md').read_text()
    assert 'memory / Full' in table and results['machine'] in table
    assert (tmp_path / 'tradeoff_quick_cpu_64.png').stat().st_size > 0
    index = (tmp_path / 'RESULTS.md').read_text().splitlines()
    rows = [line for line in index if line.startswith('| quick_cpu_64 |')]
    assert len(rows) == 1 and results['machine'] in rows[0]
    mona = results['train']['Mona']
    assert f'{mona["time_ratio"]:.2f}x / {mona["memory_ratio"]:.2f}x' \
        in rows[0]


def test_amp_check_runs_mona_and_lora():
    proc = run(['benchmarks/amp_check.py', '--steps', '3', '--size', '64',
                '--device', 'cpu'])
    results = json.loads(proc.stdout[proc.stdout.index('['):])
    assert [r['method'] for r in results] == ['Mona', 'LoRA']
    assert all(r['all_finite'] for r in results)


def test_compared_functions_are_timed_in_turn():
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch
    from run_benchmarks import round_robin_times
    calls = []
    times = round_robin_times({'a': lambda: calls.append('a'),
                               'b': lambda: calls.append('b')},
                              torch.device('cpu'), repeats=3,
                              warmup_rounds=2)
    assert calls == ['a', 'b'] * 5  # 2 warm-up rounds, then 3 timed
    assert set(times) == {'a', 'b'} and all(t >= 0 for t in times.values())
