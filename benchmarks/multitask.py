"""One shared backbone + three task adapter sets vs three full models.

    python benchmarks/multitask.py [--arch swin_b swin_l] [--quick]
        [--out benchmarks/results_multitask_cpu.json]

For each backbone size the three table models (configs/mona/: Cascade Mask
R-CNN COCO, RetinaNet VOC, UperNet ADE20K; Mona adapters), with that Swin
and its real neck/head widths, are built with random weights (sizes are
what matters) on one random base file, and saved as adapter-only
checkpoints and as full checkpoints. Then, each in a fresh process:

* shared: :class:`mmadapter.apis.multitask.MultiTaskModel` (base + three
  adapter-only files, one backbone instance);
* separate: the three full checkpoints through the stock
  ``mmdet.apis.init_detector`` / ``mmseg.apis.init_model``;

measuring the resident memory they add (RSS after loading minus RSS after
the imports) and the load time. The shared process also times switching
sets (round robin over the three) against one backbone forward of a
512x512 image. ``--quick`` runs the tiny Swin (CI keeps the script working).
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
sys.path.insert(0, REPO)

TASKS = {  # task name -> the table config it comes from
    'coco': 'configs/mona/cascade_swin_b_coco.py',
    'voc': 'configs/mona/retinanet_swin_l_voc.py',
    'ade20k': 'configs/mona/upernet_swin_l_ade20k.py',
}
ARCHS = {
    'swin_b': dict(embed_dims=128, depths=[2, 2, 18, 2],
                   num_heads=[4, 8, 16, 32]),
    'swin_l': dict(embed_dims=192, depths=[2, 2, 18, 2],
                   num_heads=[6, 12, 24, 48]),
    'tiny': dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
}


def rss_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    raise RuntimeError('no VmRSS in /proc/self/status')


def task_config(task: str, arch: str, base: str):
    """The table config of ``task`` with the Swin of ``arch`` (neck and head
    input widths follow the backbone's)."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, TASKS[task]))
    cfg.model.backbone.update(ARCHS[arch])
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=base)
    widths = [ARCHS[arch]['embed_dims'] * 2**i for i in range(4)]
    if task == 'coco':
        cfg.model.neck.in_channels = widths
    elif task == 'voc':
        cfg.model.neck.in_channels = widths[1:]
    else:
        cfg.model.decode_head.in_channels = widths
        cfg.model.auxiliary_head.in_channels = widths[2]
    return cfg


def prepare(arch: str, root: str) -> dict:
    """Random base, and per task an adapter-only and a full checkpoint."""
    import torch
    from mmdet.models.backbones import SwinTransformer
    from mmengine.registry import DATASETS

    import mmadapter  # noqa: F401
    from mmadapter.checkpoint import save_adapter_checkpoint
    from mmadapter.cli.build import build_model_without_weights
    torch.manual_seed(0)
    stock = SwinTransformer(**ARCHS[arch])
    stock.init_weights()
    base = osp.join(root, f'{arch}_base.pth')
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in stock.state_dict().items()}}, base)
    del stock
    files = dict(base=base, adapter={}, full={}, configs={}, set_params={})
    for task in TASKS:
        cfg = task_config(task, arch, base)
        model = build_model_without_weights(cfg)
        model.init_weights()
        with DATASETS.switch_scope_and_registry(cfg.default_scope) as reg:
            dataset_cls = reg.get(cfg.test_dataloader.dataset.type)
        meta = dict(dataset_meta=dict(dataset_cls.METAINFO))
        adapter = osp.join(root, f'{arch}_{task}_adapter.pth')
        save_adapter_checkpoint(model, adapter, config=cfg, meta=meta)
        full = osp.join(root, f'{arch}_{task}_full.pth')
        torch.save(dict(meta=meta, state_dict=model.state_dict()), full)
        config = osp.join(root, f'{arch}_{task}.py')
        cfg.dump(config)
        files['adapter'][task], files['full'][task] = adapter, full
        files['configs'][task] = config
        files['set_params'][task] = model.backbone.adapter_set(
            'default').num_parameters()
        del model
    return files


def measure(mode: str, files: dict, image_size: int) -> dict:
    """Run in a fresh process: load the tasks ``mode``'s way and report."""
    import torch
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    import mmdet.apis  # noqa: F401  (imports before the baseline)
    import mmseg.apis  # noqa: F401
    from mmengine.config import Config

    from mmadapter.apis.multitask import MultiTaskModel
    from mmadapter.apis.toolboxes import toolbox_of
    before = rss_mb()
    start = time.perf_counter()
    if mode == 'shared':
        served = MultiTaskModel(files['base'], files['adapter'])
        models = served.models
    else:
        models = {}
        for task, path in files['full'].items():
            cfg = Config.fromfile(files['configs'][task])
            models[task] = toolbox_of(cfg).init_model(cfg, 'cpu')
            from mmengine.runner import load_checkpoint
            load_checkpoint(models[task], path, map_location='cpu')
    load_s = time.perf_counter() - start
    result = dict(mode=mode, load_s=load_s, rss_added_mb=rss_mb() - before,
                  backbone_instances=len({
                      id(m) for model in models.values()
                      for m in model.modules()
                      if type(m).__name__ == 'AdapterSwinTransformer'}))
    if mode == 'shared':
        backbone = served.backbone
        names = backbone.adapter_set_names()
        switches = 3000
        start = time.perf_counter()
        for i in range(switches):
            backbone.activate_adapter_set(names[i % len(names)])
        result['switch_us'] = 1e6 * (time.perf_counter() - start) / switches
        x = torch.randn(1, 3, image_size, image_size)
        with torch.no_grad():
            backbone(x)  # warm-up
            start = time.perf_counter()
            backbone(x)
        result['forward_ms'] = 1e3 * (time.perf_counter() - start)
        result['switch_per_forward'] = \
            result['switch_us'] / 1e3 / result['forward_ms']
    return result


def run_measure(mode: str, files: dict, image_size: int) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, '--measure', mode, '--files',
         json.dumps(files), '--size', str(image_size)],
        capture_output=True, text=True, check=False,
        env={**os.environ, 'PYTHONPATH': REPO})
    if proc.returncode != 0:
        raise RuntimeError(f'{mode} run failed:\n{proc.stderr[-4000:]}')
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mib(path: str) -> float:
    return osp.getsize(path) / 2**20


def benchmark(arch: str, image_size: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        files = prepare(arch, root)
        shared = run_measure('shared', files, image_size)
        separate = run_measure('separate', files, image_size)
        sizes = {task: dict(adapter_mib=mib(files['adapter'][task]),
                            full_mib=mib(files['full'][task]),
                            set_mib=files['set_params'][task] * 4 / 2**20)
                 for task in TASKS}
        return dict(arch=arch, image_size=image_size, shared=shared,
                    separate=separate, base_mib=mib(files['base']),
                    sizes=sizes,
                    rss_ratio=shared['rss_added_mb'] /
                    separate['rss_added_mb'],
                    load_ratio=shared['load_s'] / separate['load_s'])


def table(results: list) -> str:
    lines = ['| backbone | resident memory: shared / 3 full (MiB) | ratio | '
             'load time: shared / 3 full (s) | ratio | switch (us) | '
             'switch / forward |',
             '|---|---|---|---|---|---|---|']
    for r in results:
        s, f = r['shared'], r['separate']
        lines.append(
            f"| {r['arch']} | {s['rss_added_mb']:.0f} / "
            f"{f['rss_added_mb']:.0f} | {r['rss_ratio']:.2f}x | "
            f"{s['load_s']:.1f} / {f['load_s']:.1f} | {r['load_ratio']:.2f}x "
            f"| {s['switch_us']:.0f} | {s['switch_per_forward']:.1e} |")
    lines += ['', '| backbone | task | adapter set (MiB) | adapter-only '
              'checkpoint (MiB) | full checkpoint (MiB) | base (MiB) |',
              '|---|---|---|---|---|---|']
    for r in results:
        for task, size in r['sizes'].items():
            lines.append(f"| {r['arch']} | {task} | {size['set_mib']:.1f} | "
                         f"{size['adapter_mib']:.1f} | {size['full_mib']:.1f}"
                         f" | {r['base_mib']:.1f} |")
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', nargs='+', default=['swin_b', 'swin_l'],
                        choices=sorted(ARCHS))
    parser.add_argument('--quick', action='store_true',
                        help='the tiny Swin, 64x64 input')
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--measure', choices=['shared', 'separate'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--files', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure, json.loads(args.files),
                                 args.size)))
        return None
    import torch
    archs, size = (['tiny'], 64) if args.quick else (args.arch, args.size)
    results = [benchmark(arch, size) for arch in archs]
    machine = dict(machine=platform.node(), processor=platform.processor(),
                   cpus=os.cpu_count(), torch=torch.__version__,
                   python=platform.python_version())
    print(f'Machine: {machine}\n\n{table(results)}')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(dict(machine=machine, results=results), f, indent=1)
    return results


if __name__ == '__main__':
    main()
