"""The benchmark scripts keep working (quick mode; no timing assertions)."""
import json
import os
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
    assert results['flush_denormal'] is True
    assert 'subnormal floats flushed to zero' in table
    assert 'MALLOC_MMAP_THRESHOLD_=131072): the tensors alive' in table
    assert 'MALLOC_MMAP_MAX_=0' in results['heap']
    assert set(results['page_faults']) == set(results['train'])
    assert 'minor page faults a timed step (median): Full ' in table
    assert (tmp_path / 'tradeoff_quick_cpu_64.png').stat().st_size > 0
    index = (tmp_path / 'RESULTS.md').read_text().splitlines()
    rows = [line for line in index if line.startswith('| quick_cpu_64 |')]
    assert len(rows) == 1 and results['machine'] in rows[0]
    mona = results['train']['Mona']
    assert mona['memory_margin'] == pytest.approx(
        mona['memory_ratio'] -
        results['train']['Fixed (grad through blocks)']['memory_ratio'])
    assert f'{mona["time_ratio"]:.2f}x / {mona["memory_ratio"]:.2f}x ' \
        f'({mona["time_margin"]:+.2f} / {mona["memory_margin"]:+.2f})' \
        in rows[0]
    # the arithmetic of each step: Mona's own matmuls and convs above the
    # floor's, which has the same frozen blocks
    train = results['train']
    floor = train['Fixed (grad through blocks)']
    assert train['Full']['flop_ratio'] == 1.0
    assert floor['flops'] < mona['flops']
    assert mona['flop_margin'] == pytest.approx(
        mona['flop_ratio'] - floor['flop_ratio'])
    assert f'{mona["flop_ratio"]:.3f}x ({mona["flop_margin"]:+.3f})' in table
    q1, q3 = mona['time_margin_iqr']
    assert f'{mona["time_margin"]:+.2f} ({q1:+.2f}..{q3:+.2f}) / ' in table


def test_settings_measure_each_papers_batch_and_precision(tmp_path):
    """The per-setting step measurements (run by the GPU lease command),
    tiny and on the CPU: each setting's table with the floor's margins, its
    batch and precision (COCO's fp16 AMP at batch 1 and ADE20K's fp32 at
    batch 2; VOC differs from COCO only in its numbers)."""
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    from bench_report import margin_text
    for setting in ('coco', 'ade20k'):
        subprocess.run(
            [sys.executable, 'benchmarks/run_benchmarks.py', '--quick',
             '--device', 'cpu', '--setting', setting, '--repeats', '1',
             '--out-dir', str(tmp_path), '--methods', 'Full',
             'Fixed (grad through blocks)', 'Mona'],
            cwd=REPO, check=True, capture_output=True, text=True,
            timeout=800)
    # (fp16 autocast runs as bf16 on CPU)
    expected = {'coco': ((32, 64), 1, 'bf16'), 'ade20k': ((32, 32), 2, None)}
    for setting, (hw, batch, amp) in expected.items():
        with open(tmp_path / f'results_quick_cpu_{setting}.json') as f:
            results = json.load(f)
        assert (tuple(results['hw']), results['batch'], results['amp']) == \
            (hw, batch, amp)
        assert list(results['train']) == [
            'Full', 'Fixed (grad through blocks)', 'Mona']
        mona, floor = (results['train'][m] for m in
                       ('Mona', 'Fixed (grad through blocks)'))
        assert mona['time_margin'] == pytest.approx(
            mona['time_ratio'] - floor['time_ratio'])
        table = (tmp_path / f'RESULTS_quick_cpu_{setting}.md').read_text()
        assert margin_text(mona, spread=True) in table
    index = (tmp_path / 'RESULTS.md').read_text()
    assert 'Swin tiny test arch, 64x32, batch 1, bf16 AMP' in index
    assert 'Swin tiny test arch, 32x32, batch 2, fp32' in index


def test_step_profile_lists_each_methods_operators_above_the_floor(
        tmp_path):
    # every operator listed: the rows checked are call counts, which a
    # ranking by time would drop on a busy machine
    run(['benchmarks/profile_step.py', '--quick', '--device', 'cpu',
         '--rounds', '1', '--methods', 'Mona', '--top', '1000',
         '--out-dir', str(tmp_path)])
    text = (tmp_path / 'quick_PROFILE_cpu_64.md').read_text()
    floor, mona = text.split('## Fixed (grad through blocks)')[1].split(
        '## Mona')
    assert "the profiling process's heap: freed memory kept" in text
    assert 'MonaFunction' not in floor
    # the tiny Swin's 8 blocks hold 16 Monas: one function call each
    assert '| `MonaFunction` | +16 |' in mona
    assert '| `MonaFunctionBackward` | +16 |' in mona


def test_operator_timer_lists_the_kernels_above_the_floor(tmp_path):
    run(['benchmarks/profile_step.py', '--quick', '--device', 'cpu',
         '--rounds', '1', '--methods', 'Mona', '--timer', 'dispatch',
         '--top', '1000', '--out-dir', str(tmp_path)])
    text = (tmp_path / 'quick_PROFILE_cpu_64_dispatch.md').read_text()
    assert 'timed around its kernel by a dispatch mode' in text
    mona = text.split('## Mona')[1]
    # each of the 16 Monas at batch 1: its depthwise conv, and the conv
    # that computes its weight gradient; no autograd records (the
    # profiler's MonaFunction rows)
    assert '| `aten::convolution` | +32 |' in mona
    assert 'MonaFunction' not in mona


def test_fp16_step_scales_the_loss_and_steps_the_optimizer():
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    from bench_models import (
        ARCHS,
        build_backbone,
        make_optimizer,
        train_step_fn,
    )
    model = build_backbone(ARCHS['Swin tiny test arch'](), 'Mona').train()
    optimizer = make_optimizer(model)
    before = [p.detach().clone() for p in optimizer.param_groups[0]['params']]
    step = train_step_fn(model, torch.randn(1, 3, 32, 32), optimizer, 'fp16')
    step()
    after = optimizer.param_groups[0]['params']
    assert step.skipped == 0
    assert any(not torch.equal(a, b) for a, b in zip(after, before))
    assert all(p.grad is None for p in after)


def test_amp_check_runs_mona_and_lora():
    proc = run(['benchmarks/amp_check.py', '--steps', '3', '--size', '64',
                '--device', 'cpu'])
    results = json.loads(proc.stdout[proc.stdout.index('['):])
    assert [r['method'] for r in results] == ['Mona', 'LoRA']
    assert all(r['all_finite'] for r in results)


def test_mask_parity_check_passes_where_masks_are_nn_dropouts(tmp_path):
    out = tmp_path / 'parity.json'
    run(['benchmarks/mask_parity.py', '--device', 'cpu', '--out', str(out)])
    report = json.loads(out.read_text())
    assert report['masks'] == {'float32': True, 'bfloat16': True}
    assert set(report['modules']['float32']) == {'Mona', 'Houlsby'}
    assert report['ok']


def test_mask_parity_check_catches_masks_drawn_otherwise(monkeypatch):
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    import mask_parity
    from mmadapter.ops import bottleneck, mona
    from mmadapter.ops import dropout as dropout_ops
    draw = dropout_ops.dropout_mask

    def shifted(shape, p, training, device, dtype=torch.float32):
        torch.rand(1)  # one draw first: other masks, same distribution
        return draw(shape, p, training, device, dtype)

    cpu = torch.device('cpu')
    assert mask_parity.masks_match((2, 48, 16), 0.1, torch.float32, cpu)
    assert max(mask_parity.module_parity(cpu, None).values()) < 1e-4
    monkeypatch.setattr(mask_parity, 'dropout_mask', shifted)
    monkeypatch.setattr(mona, 'dropout_mask', shifted)
    monkeypatch.setattr(bottleneck, 'dropout_mask', shifted)
    assert not mask_parity.masks_match((2, 48, 16), 0.1, torch.float32,
                                       cpu)
    parity = mask_parity.module_parity(cpu, None)
    assert parity['Mona'] > 1e-2 and parity['Houlsby'] > 1e-2


def test_compared_functions_are_timed_in_turn():
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    from bench_timing import round_robin_times
    calls = []
    times = round_robin_times({'a': lambda: calls.append('a'),
                               'b': lambda: calls.append('b')},
                              torch.device('cpu'), repeats=3,
                              warmup_rounds=2)
    assert calls == ['a', 'b'] * 5  # 2 warm-up rounds, then 3 timed
    assert set(times) == {'a', 'b'} and all(t >= 0 for t in times.values())


def test_each_timed_call_can_follow_an_untimed_one_of_its_own():
    """(so that a training step finds its memory touched a step ago, not
    cold from the other methods' steps)"""
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    from bench_timing import round_robin_samples
    calls = []
    samples = round_robin_samples({'a': lambda: calls.append('a'),
                                   'b': lambda: calls.append('b')},
                                  torch.device('cpu'), repeats=2,
                                  warmup_rounds=1, untimed_before=1)
    assert calls == ['a', 'a', 'b', 'b'] * 3
    assert [len(t) for t in samples.values()] == [2, 2]


def test_time_margins_are_medians_of_each_rounds_own_margins():
    """A machine that runs a whole round at half speed moves no margin:
    each round's margin compares steps taken seconds apart."""
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    from bench_report import margin_text
    from bench_stats import FLOOR, add_ratios
    step_seconds = {'Full': [1.0, 2.0, 1.0], FLOOR: [0.5, 1.0, 0.5],
                    'Mona': [0.6, 1.2, 0.8]}
    train = {m: dict(peak_mib=mib, trainable=1)
             for m, mib in (('Full', 100.0), (FLOOR, 50.0), ('Mona', 60.0))}
    mona = add_ratios(train, step_seconds)['Mona']
    # per round: +0.1, +0.1, +0.3 (the ratio of medians would say +0.3)
    assert mona['time_margin'] == pytest.approx(0.1)
    assert mona['time_margin_iqr'] == pytest.approx([0.1, 0.2])
    assert mona['time_ratio'] == pytest.approx(0.6)
    assert mona['seconds'] == 0.8 and mona['step_seconds'] == [0.6, 1.2, 0.8]
    assert mona['memory_margin'] == pytest.approx(0.1)
    assert margin_text(mona) == '+0.10 / +0.10'
    assert margin_text(mona, spread=True) == '+0.10 (+0.10..+0.20) / +0.10'


def report_environment(name, queue):
    queue.put(os.environ.get(name))


def test_cpu_memory_runs_count_live_tensors_not_heap_holes():
    """The memory process starts with glibc's mmap threshold fixed (freed
    tensors leave no heap holes), and the benchmark's own environment is
    left as it was."""
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    from bench_process import LIVE_TENSORS_ENV, in_subprocess
    name = 'MALLOC_MMAP_THRESHOLD_'
    assert LIVE_TENSORS_ENV == {name: '131072'}
    before = dict(os.environ)
    assert in_subprocess(report_environment, name,
                         env=LIVE_TENSORS_ENV) == '131072'
    assert dict(os.environ) == before
    assert in_subprocess(report_environment, name) == before.get(name)


def refill_freed_tensors(mib=64, steps=8):
    """Minor page faults of the last of ``steps`` rounds that each allocate,
    write and free tensors of ``mib`` and ``mib / 4`` MiB (a training
    step's pattern), the torch threads and whether a subnormal float
    survives."""
    import torch

    from bench_timing import minor_page_faults
    for _ in range(steps):
        before = minor_page_faults()
        big, small = torch.ones(mib * 2 ** 18), torch.ones(mib * 2 ** 16)
        del big, small
    return (minor_page_faults() - before, torch.get_num_threads(),
            torch.tensor([1e-40]).item() != 0)


def test_cpu_timing_processes_reuse_freed_memory_instead_of_faulting_it_in():
    """The steps are timed in a fresh process whose heap keeps what is
    freed, so once the first steps have grown it a step faults in no pages
    (glibc's defaults unmap a 64 MiB tensor when it is freed and fault it in
    again), with the parent's threads and subnormal flushing."""
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    from bench_process import run_timed
    pages = 64 * 2 ** 20 // os.sysconf('SC_PAGE_SIZE')
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        faults, child_threads, subnormal_kept = run_timed(
            refill_freed_tensors, device='cpu')
        assert faults < pages / 100 and child_threads == 1
        assert not subnormal_kept
        faults, _, subnormal_kept = run_timed(
            refill_freed_tensors, device='cpu', keep_denormals=True)
        assert faults < pages / 100 and subnormal_kept
    finally:
        torch.set_num_threads(threads)
    faults, _, _ = run_timed(refill_freed_tensors, device='cpu',
                             default_heap=True)  # in this process
    assert faults >= pages


def test_cpu_measurements_flush_subnormals_unless_asked_not_to():
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    from bench_timing import flush_denormals
    tiny = 1e-40  # subnormal in float32
    try:
        assert flush_denormals(torch.device('cpu'), keep=True) is False
        assert torch.tensor([tiny]).item() != 0
        assert flush_denormals(torch.device('cpu'), keep=False) is True
        assert torch.tensor([tiny]).item() == 0
    finally:
        torch.set_flush_denormal(False)


def test_optimizer_step_compares_the_same_update(tmp_path):
    """The quick optimizer benchmark writes a row per method, and the three
    AdamW implementations it times make the same update."""
    run(['benchmarks/optimizer_step.py', '--quick', '--out', str(tmp_path)])
    table = (tmp_path / 'OPTIMIZER_cpu_quick.md').read_text()
    for method in ('Full', 'Mona', 'LoRA', 'AdaptFormer', 'Houlsby',
                   'LoRand'):
        assert f'| {method} |' in table
    assert 'per-tensor loop (ms) | foreach (ms) | fused (ms)' in table

    import torch
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    from optimizer_step import IMPLEMENTATIONS
    torch.manual_seed(0)
    start = [torch.randn(5, 7), torch.randn(7)]
    grads = [torch.randn_like(p) for p in start]
    stepped = []
    for kwargs in IMPLEMENTATIONS.values():
        params = [p.clone().requires_grad_() for p in start]
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05, **kwargs)
        opt.step()
        opt.step()
        stepped.append([p.detach() for p in params])
    for other in stepped[1:]:
        for a, b, s in zip(stepped[0], other, start):
            assert not torch.equal(a, s)
            torch.testing.assert_close(a, b)


def test_mask_draw_compares_the_two_draws_step_for_step():
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import mask_draw
    from mmadapter.ops import dropout as dropout_ops
    if not dropout_ops._bernoulli_is_serial():
        pytest.skip('this PyTorch/CPU draws bernoulli_ with MKL')
    seen = []
    for words in (False, True):
        mask_draw.with_draw(
            lambda: seen.append(dropout_ops._bernoulli_is_serial()), words)()
    assert seen == [False, True]
    assert dropout_ops._bernoulli_is_serial()  # restored after each call
    per_million, rows = mask_draw.measure(32, 1)
    assert set(per_million) == {'bernoulli_', 'words'}
    assert set(rows) == set(mask_draw.METHODS)
    assert all(r['bernoulli'] > 0 and r['words'] > 0 for r in rows.values())


def test_kernel_choices_compare_equal_results():
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import torch

    import kernel_choices
    rows = kernel_choices.measure(grids=(8, ), batches=(1, 2), values=4096,
                                  repeats=1)
    assert set(rows) == {'8x8, batch 1', '8x8, batch 2', 'mask words',
                         'dropout multiplier'}
    assert all(lean > 0 and other > 0 for lean, other, _ in rows.values())
    # a pair that computes something else is refused, masks to the bit
    with pytest.raises(AssertionError):
        kernel_choices.check_same({'off': (lambda: torch.ones(3),
                                           lambda: torch.zeros(3))})
    def draw():  # the same mask twice: each draw from the same state
        return torch.rand(64) < 0.5

    kernel_choices.check_same({'mask': (draw, draw)})
    with pytest.raises(AssertionError):
        kernel_choices.check_same({'mask': (
            draw, lambda: torch.rand(64) >= 0.5)})
