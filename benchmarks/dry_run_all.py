"""The real-size dry run (tools/analysis/dry_run.py) of every table config,
one at a time, into a results table naming the machine.

    python benchmarks/dry_run_all.py                 # the 30 table configs
    python benchmarks/dry_run_all.py --vit           # and configs/vit/
    python benchmarks/dry_run_all.py --only mona     # names containing 'mona'

Writes ``benchmarks/DRY_RUN_<tag>.md`` and ``dry_run_<tag>.json`` (tag:
cpu or cuda) after every config, so an interrupted run keeps what
finished; ``--resume`` skips configs already in the JSON. Each run's work
directory (data, checkpoint: up to a few GB for full fine-tuning) is
deleted once its figures are read.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
import time
from glob import glob

import torch

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
#: the order of the runs: Mona and Full first, so that an interrupted run
#: has covered the three settings
METHODS = ('mona', 'full', 'lora', 'adaptformer', 'houlsby', 'lorand',
           'bitfit', 'normtuning', 'partial1', 'fixed')
SETTINGS = ('cascade_swin_b_coco', 'retinanet_swin_l_voc',
            'upernet_swin_l_ade20k')


def machine_name(device: str) -> str:
    path = osp.join(HERE, 'bench_timing.py')
    spec = importlib.util.spec_from_file_location('bench_timing', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.machine_name(torch.device(device))


def table_configs(vit: bool):
    configs = [f'configs/{m}/{s}.py' for m in METHODS for s in SETTINGS]
    if vit:
        configs += sorted(osp.relpath(p, REPO)
                          for p in glob(osp.join(REPO, 'configs', 'vit',
                                                 '*.py')))
    return configs


def code_version() -> str:
    """The commit the runs use, '+' when the work tree differs from it."""
    def git(*args):
        return subprocess.run(['git', '-C', REPO, *args], capture_output=True,
                              text=True).stdout.strip()
    commit = git('rev-parse', '--short', 'HEAD') or '?'
    return commit + ('+' if git('status', '--porcelain', '--',
                                'mmadapter', 'configs', 'tools') else '')


def run_one(config: str, args) -> dict:
    work_dir = tempfile.mkdtemp(prefix='dry_run_')
    load = os.getloadavg()[0]
    command = [sys.executable,
               osp.join(REPO, 'tools', 'analysis', 'dry_run.py'),
               osp.join(REPO, config), '--work-dir', work_dir,
               '--iters', str(args.iters), '--num-val', str(args.num_val),
               '--precision', args.precision]
    start = time.time()
    try:
        proc = subprocess.run(command, cwd=REPO, capture_output=True,
                              text=True, timeout=args.timeout)
        result_file = osp.join(work_dir, 'dry_run.json')
        if proc.returncode == 0 and osp.isfile(result_file):
            with open(result_file) as f:
                result = json.load(f)
        else:
            lines = (proc.stdout + proc.stderr).strip().splitlines()
            error = next((line for line in reversed(lines)
                          if 'Error' in line or 'dry_run:' in line),
                         lines[-1] if lines else '?')
            result = dict(config=config, error=error[-300:])
    except subprocess.TimeoutExpired:
        result = dict(config=config, error=f'timed out after {args.timeout}s')
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    result['config'] = config
    result['commit'] = code_version()
    result['wall_s'] = round(time.time() - start, 1)
    result['load_before'] = round(load, 1)
    return result


def write_table(results, machine, tag, args):
    rows = []
    for r in results:
        if 'error' in r:
            rows.append(f"| `{r['config']}` | failed: {r['error']} "
                        f"| | | | | | | | | {r.get('commit', '')} |")
            continue
        precision = 'AMP (bf16 autocast on CPU)' if r['amp'] and tag == 'cpu' \
            else ('AMP' if r['amp'] else 'fp32')
        if not r['amp'] and r.get('precision_note'):
            precision = 'fp32 in place of AMP (no fast bf16 on this CPU)' \
                if 'bfloat16 kernels' in r['precision_note'] else \
                'fp32 in place of AMP (--precision fp32)'
        cuda = f"{r['cuda_peak_mib']:,}" if r.get('cuda_peak_mib') else ''
        rows.append(
            f"| `{r['config']}` | {r['dataset']} {r['image_size']} | "
            f"{precision} | {r['seconds_per_iter']:.1f} | "
            f"{r['train_cpu_s']:.0f} | {r['train_peak_rss_gib']:.2f} | "
            f"{r['test_peak_rss_gib']:.2f} | {cuda} | "
            f"{'yes' if r['finite_losses'] else 'NO'} | "
            f"{r['load_before']} | {r.get('commit', '')} |")
    done = sum('error' not in r for r in results)
    header = ('| config | data | precision | s/iter | train CPU s | '
              'train peak RSS (GiB) | test peak RSS (GiB) | '
              'CUDA peak (MiB/GPU) | losses finite | load | code |')
    text = f"""# Real-size dry runs of the table configs ({tag})

`python benchmarks/dry_run_all.py` on {machine}, torch {torch.__version__}:
each config's REAL model (random backbone weights), real pipeline and the
Runner of tools/train.py for {args.iters} iterations on generated data at the
real image size, then tools/test.py on the checkpoint with {args.num_val}
generated test images (`tools/analysis/dry_run.py`). s/iter is the last
training iteration's wall time (mmengine's log); train CPU s is the CPU time
of the whole training process (start-up, model build and random init, both
iterations, checkpoint), which depends less than wall time on what else the
machine runs; "load" is the machine's 1-minute load average when the config
started (this machine has {os.cpu_count()} cores: above that, other jobs
shared it and wall times are stretched). Peak memory is the peak RSS of the
training and of the testing process. Test metrics of a model trained 2
iterations from random weights mean nothing and are not listed (the runs
check that tools/test.py evaluates). "code": the commit the run used
("+": with uncommitted changes; blank: recorded before the script noted it).
One config at a time; {done} of {len(results)} finished.

{header}
|---|---|---|---|---|---|---|---|---|---|---|
""" + '\n'.join(rows) + '\n'
    with open(osp.join(HERE, f'DRY_RUN_{tag}.md'), 'w') as f:
        f.write(text)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--vit', action='store_true',
                        help='also the configs under configs/vit/')
    parser.add_argument('--only', help='configs whose path contains this')
    parser.add_argument('--iters', type=int, default=2)
    parser.add_argument('--num-val', type=int, default=2)
    parser.add_argument('--timeout', type=int, default=1800,
                        help='seconds per config')
    parser.add_argument('--precision', choices=['auto', 'config', 'fp32'],
                        default='auto', help="dry_run.py's --precision")
    parser.add_argument('--resume', action='store_true',
                        help='skip configs already in the results JSON')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    tag = 'cuda' if torch.cuda.is_available() else 'cpu'
    machine = machine_name(tag)
    json_path = osp.join(HERE, f'dry_run_{tag}.json')
    results = []
    if args.resume and osp.isfile(json_path):
        with open(json_path) as f:
            results = json.load(f)['results']
    done = {r['config'] for r in results}
    configs = [c for c in table_configs(args.vit)
               if (not args.only or args.only in c) and c not in done]
    for i, config in enumerate(configs, start=1):
        print(f'[{i}/{len(configs)}] {config}', flush=True)
        result = run_one(config, args)
        results.append(result)
        print('   ', result.get('error') or
              f"{result['seconds_per_iter']:.2f} s/iter, "
              f"{result['train_peak_rss_gib']:.2f} GiB", flush=True)
        with open(json_path, 'w') as f:
            json.dump(dict(machine=machine, torch=torch.__version__,
                           results=results), f, indent=1)
        write_table(results, machine, tag, args)


if __name__ == '__main__':
    main()
