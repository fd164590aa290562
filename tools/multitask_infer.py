"""Run several tasks on the same images with ONE shared frozen backbone.

    python tools/multitask_infer.py BASE IMAGE [IMAGE ...] \
        --task voc=work_dirs/voc/iter_600.pth \
        --task coco=work_dirs/coco/iter_300.pth \
        --task ade=work_dirs/ade/iter_300.pth [--out-dir DIR] [--device cpu]

BASE is the base checkpoint all tasks were trained on; each task checkpoint
is an adapter-only file (AdapterCheckpointHook) or a shared adapter set
(NAME.safetensors with NAME.json beside it; either file names it). Results
are drawn by the stock visualisers to DIR/<task>/<image>. The Python API
behind it: mmadapter/apis/multitask.py.
"""
import argparse
import os.path as osp
import sys
import time
from typing import Dict

# run from a clone: use this checkout's package
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmadapter  # noqa: E402,F401  (registries)
from mmadapter.apis.multitask import MultiTaskModel  # noqa: E402
from mmadapter.checkpoint import add_trust_option, script_loads  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run several tasks on the same images with one shared '
        'frozen backbone: one base checkpoint, one adapter-only checkpoint '
        'per task. Writes each task\'s results as the stock visualisers '
        'draw them to OUT_DIR/<task>/<image>.')
    parser.add_argument('base', help='the base checkpoint every task was '
                        'trained on')
    parser.add_argument('images', nargs='+', help='image files')
    parser.add_argument('--task', action='append', required=True,
                        metavar='NAME=CHECKPOINT',
                        help='a task and its adapter-only checkpoint, or '
                        'its adapter set (.safetensors with its .json) '
                        '(repeat per task)')
    parser.add_argument('--config', action='append', default=[],
                        metavar='NAME=CONFIG',
                        help='config of a task, if not the one its '
                        'checkpoint records')
    parser.add_argument('--out-dir', default='multitask_vis')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detections below this score are not drawn')
    add_trust_option(parser)
    return parser.parse_args(argv)


def _pairs(items, option) -> Dict[str, str]:
    pairs = {}
    for item in items:
        name, sep, value = item.partition('=')
        if not sep or not name or not value:
            raise SystemExit(f'{option} {item!r}: expected NAME=PATH.')
        if name in pairs:
            raise SystemExit(f'{option}: task {name!r} given twice.')
        pairs[name] = value
    return pairs


def main(argv=None) -> Dict[str, object]:
    args = parse_args(argv)
    tasks = _pairs(args.task, '--task')
    configs = _pairs(args.config, '--config')
    unknown = sorted(set(configs) - set(tasks))
    if unknown:
        raise SystemExit(f'--config for unknown task(s) {unknown}; tasks: '
                         f'{sorted(tasks)}.')
    start = time.perf_counter()
    with script_loads(args.trust_checkpoint_types):
        model = MultiTaskModel(args.base, tasks, configs, args.device)
    loaded = time.perf_counter()
    results = model.predict_all(args.images)
    done = time.perf_counter()
    written = model.draw(args.images, results, args.out_dir, args.score_thr)
    print(f'{model.summary()}\nLoaded in {loaded - start:.1f} s; '
          f'{len(tasks)} tasks on {len(args.images)} image(s) in '
          f'{done - loaded:.1f} s; wrote {len(written)} files under '
          f'{args.out_dir}/.')
    return results


if __name__ == '__main__':
    main()
