"""The tables, index and figure of run_benchmarks.py's results."""
import glob
import json
import os
import os.path as osp

FLOOR = 'Fixed (grad through blocks)'


def target_text(results, name):
    """The targets of ``name`` in this run and whether they are met."""
    r = results['train'][name]
    texts = []
    ratio_target = results['targets'].get(name)
    if ratio_target:
        met = r['time_ratio'] <= ratio_target[0] and \
            r['memory_ratio'] <= ratio_target[1]
        texts.append(f'vs Full <= {ratio_target[0]:.2f}, '
                     f'<= {ratio_target[1]:.2f}: '
                     + ('met' if met else 'NOT met'))
    margin_target = results['margin_targets'].get(name)
    if margin_target is not None and 'time_margin' in r:
        met = [m <= margin_target
               for m in (r['time_margin'], r['memory_margin'])]
        texts.append(f'above floor <= +{margin_target:.2f}: '
                     + {(True, True): 'met', (False, False): 'NOT met',
                        (False, True): 'memory met, time NOT met',
                        (True, False): 'time met, memory NOT met'}[
                            tuple(met)])
        if r.get('flop_margin', 0) > margin_target:
            texts.append(f'(the time target is below the method\'s own '
                         f'arithmetic, +{r["flop_margin"]:.3f})')
    return '; '.join(texts)


def margin_text(r, spread=False):
    """``time / memory`` margins; with ``spread``, the time margin's
    interquartile range over the rounds beside it (runs that recorded it)."""
    if 'time_margin' not in r:
        return '-'
    time_text = f'{r["time_margin"]:+.2f}'
    if spread and 'time_margin_iqr' in r:
        q1, q3 = r['time_margin_iqr']
        time_text += f' ({q1:+.2f}..{q3:+.2f})'
    return f'{time_text} / {r["memory_margin"]:+.2f}'


def flop_text(r):
    if 'flop_margin' not in r:
        return '-'
    return f'{r["flop_ratio"]:.3f}x ({r["flop_margin"]:+.3f})'


def write_results(results, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    tag = results['tag']
    with open(osp.join(out_dir, f'results_{tag}.json'), 'w') as f:
        json.dump(results, f, indent=2)
    h, w = results['hw']
    lines = [
        f'# Benchmark results: {tag}', '',
        f'- machine: {results["machine"]}',
        f'- torch {results["torch"]}, device `{results["device"]}`'
        + (f', {results["threads"]} torch thread(s)'
           if results['device'] == 'cpu' else '')
        + (', subnormal floats flushed to zero (`torch.set_flush_denormal`;'
           ' `--keep-denormals` keeps them)'
           if results.get('flush_denormal') else ''),
        f'- backbone: {results["arch"]}, input {w}x{h} (width x height), '
        f'batch {results["batch"]}, '
        + (f'{results["amp"]} autocast' if results['amp'] else 'fp32')
        + (f'; setting: {results["setting"]}' if results.get('setting')
           else ''),
        f'- peak memory: {results["memory_kind"]}',
    ]
    if results.get('heap'):
        faults = ', '.join(f'{m} {f:.0f}' for m, f in
                           results.get('page_faults', {}).items())
        lines.append(f'- timing processes\' heap: {results["heap"]}'
                     + (f'; minor page faults a timed step (median): {faults}'
                        if faults else ''))
    lines += [
        '- times: {train} timed rounds of training steps{more}, the '
        'functions compared taking their calls in turn in one process, after '
        'warm-up calls; each timed step or inference call right after an '
        'untimed one of the same model (its memory as in training); step '
        'times are medians, time ratios and margins the medians of each '
        'round\'s own ratios'.format(
            train=results['timed_calls']['train'],
            more='' if not results['mona_op'] else
            ' ({mona_op} Mona op, {inference} inference calls)'.format(
                **results['timed_calls'])),
    ]
    if results.get('load'):
        lines.append(f'- load average (1, 5, 15 min) at start / end: '
                     f'{results["load"]["start"]} / {results["load"]["end"]}')
    if results['mona_op']:
        op = results['mona_op']
        lines += [
            '', '## 1. Mona module, forward+backward',
            f'(128 channels, bottleneck 64, {op["grid"]}x{op["grid"]} grid; '
            'reference: the readable forward, impl=\'plain\')', '',
            '| reference (s) | fused (s) | speed-up |', '|---|---|---|',
            f'| {op["reference"]:.4f} | {op["fused"]:.4f} | '
            f'{op["speedup"]:.2f}x |']
    lines += [
        '', '## 2. One training step vs Full fine-tuning', '',
        'Margin: the ratio minus the floor\'s (`Fixed (grad through '
        'blocks)`: frozen backbone, gradient through every block), i.e. what '
        'the method\'s own modules cost. FLOPs: those of the step\'s '
        'matmuls and convolutions, forward and backward '
        '(torch.utils.flop_counter), vs Full\'s and (in brackets) above the '
        'floor\'s: what any implementation of the same computation must do, '
        'so a time margin cannot go much below it. In brackets after the '
        'time margin: its interquartile range over the rounds, how far one '
        'round\'s estimate moves on this machine.', '',
        '| method | trainable | step (s) | time / Full | peak MiB | '
        'memory / Full | above floor (time / memory) | FLOPs / Full (above '
        'floor) | target |',
        '|---|---|---|---|---|---|---|---|---|'
    ]
    for name, r in results['train'].items():
        lines.append(f'| {name} | {r["trainable"]:,} | {r["seconds"]:.3f} | '
                     f'{r["time_ratio"]:.2f}x | {r["peak_mib"]:.0f} | '
                     f'{r["memory_ratio"]:.2f}x | '
                     f'{margin_text(r, spread=True)} | {flop_text(r)} | '
                     f'{target_text(results, name)} |')
    skipped = {m: n for m, n in results.get('skipped_steps', {}).items() if n}
    if skipped:
        lines += ['', 'Optimizer steps the fp16 loss scaler skipped '
                  '(overflow): ' + ', '.join(f'{m} {n}'
                                             for m, n in skipped.items())]
    if results['inference']:
        lines += ['', '## 3. Inference latency vs the stock backbone', '',
                  '| backbone | latency (s) | / stock |', '|---|---|---|']
        for name, r in results['inference'].items():
            lines.append(
                f'| {name} | {r["seconds"]:.4f} | {r["ratio"]:.3f}x |')
    with open(osp.join(out_dir, f'RESULTS_{tag}.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return lines


def write_index(out_dir):
    """``RESULTS.md``: one row per run whose ``results_*.json`` is in
    ``out_dir`` (each run's own table is ``RESULTS_<tag>.md``)."""
    runs = []
    for path in sorted(glob.glob(osp.join(out_dir, 'results_*.json'))):
        with open(path) as f:
            run = json.load(f)
        if not {'train', 'machine', 'torch'} <= set(run):
            continue  # another script's results (multitask.py...)
        run['name'] = osp.basename(path)[len('results_'):-len('.json')]
        if run.get('note'):  # e.g. what changed since the run was made
            run['name'] += f' ({run["note"]})'
        runs.append(run)
    shown = [m for m in ('Mona', 'LoRA', 'AdaptFormer', 'Houlsby', 'LoRand')
             if any(m in r['train'] for r in runs)]

    def cell(run, method):
        r = run['train'].get(method)
        if not r:
            return '-'
        text = f'{r["time_ratio"]:.2f}x / {r["memory_ratio"]:.2f}x'
        if 'time_margin' in r:
            text += f' ({margin_text(r)})'
        return text

    def floor(run):
        r = run['train'].get(FLOOR)
        return f'{r["time_ratio"]:.2f}x / {r["memory_ratio"]:.2f}x' \
            if r else '-'

    def inputs(run):
        h, w = run.get('hw', (run['size'], run['size']))
        amp = run.get('amp')
        return (f'{run["arch"]}, {w}x{h}, batch {run.get("batch", 1)}, '
                + (f'{amp} AMP' if amp else 'fp32'))

    lines = [
        '# Benchmark results', '',
        'One row per run (`python benchmarks/run_benchmarks.py`); each run\'s '
        'full table is `RESULTS_<run>.md`, its numbers `results_<run>.json`. '
        'Training columns: step time / peak memory vs Full fine-tuning, and '
        'in brackets the margin above the floor (the same ratios minus those '
        'of a frozen backbone with the gradient through every block, column '
        '"floor"; runs made before the margins were added have none). '
        'Targets: issue #6, vs Full: Mona <= 0.80x / 0.75x; LoRA, '
        'AdaptFormer, Houlsby <= 0.75x / 0.70x; fused Mona op >= 1.8x; LoRA '
        'merged inference within 2% of the stock backbone. Issue #16, above '
        'the floor at Swin-B 512x512: Mona and LoRA <= +0.05, Houlsby and '
        'LoRand <= +0.06 (time and memory); at the COCO setting with fp16 '
        'AMP on a GPU: Mona <= 1.0x / 0.75x of Full.', '',
        '| run | machine | torch | backbone, input | fused Mona op | floor | '
        + ' | '.join(shown) + ' | LoRA merged inference |',
        '|' + '---|' * (7 + len(shown)),
    ]
    for run in runs:
        merged = (run.get('inference') or {}).get('LoRA (merged)')
        merged = f'{merged["ratio"]:.3f}x' if merged else '-'
        op = run.get('mona_op')
        lines.append(
            f'| {run["name"]} | {run["machine"]} | {run["torch"]} | '
            f'{inputs(run)} | '
            + (f'{op["speedup"]:.2f}x' if op else '-') + f' | {floor(run)} | '
            + ' | '.join(cell(run, m) for m in shown) + f' | {merged} |')
    with open(osp.join(out_dir, 'RESULTS.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def plot(results, out_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    train = {k: v for k, v in results['train'].items() if k != FLOOR}
    floor = results['train'].get(FLOOR)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], 'time_ratio', 'step time / Full'),
                           (axes[1], 'memory_ratio', 'peak memory / Full')):
        for name, r in train.items():
            ax.scatter(max(r['trainable'], 1), r[key])
            ax.annotate(name, (max(r['trainable'], 1), r[key]), fontsize=8)
        if floor is not None:
            ax.axhline(floor[key], color='grey', linestyle='--', linewidth=1)
            ax.annotate('floor: frozen, grad through blocks',
                        (1, floor[key]), fontsize=7, color='grey')
        ax.set_xscale('log')
        ax.set_xlabel('trainable backbone parameters')
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    h, w = results['hw']
    fig.suptitle(f'{results["arch"]} {w}x{h}, batch {results["batch"]}, '
                 f'{results["amp"] or "fp32"}, {results["machine"]}',
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(osp.join(out_dir, f'tradeoff_{results["tag"]}.png'), dpi=100)


