"""Size of adapter-only checkpoints vs full ones, for the paper's models.

    python benchmarks/checkpoint_sizes.py [CONFIG ...]

Builds each model from its config without loading weights (no pretrained
file needed), then measures the bytes ``torch.save`` writes for:
* the full model weights, and the adapter-only weights
  (:func:`mmadapter.checkpoint.adapter_state_dict`);
* training checkpoints with AdamW state (two moments per trained
  parameter): full fine-tuning (every parameter trains) vs the method's
  adapter-only checkpoint (what ``AdapterCheckpointHook`` writes).
Prints a Markdown table (the numbers in benchmarks/CHECKPOINT_SIZES.md).
"""
import argparse
import os.path as osp
import platform
import sys
from collections import OrderedDict

import torch

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(HERE))

import mmadapter  # noqa: E402,F401
from mmadapter.checkpoint import adapter_state_dict  # noqa: E402
from mmadapter.cli.build import build_model_without_weights  # noqa: E402

CONFIGS = ['configs/mona/cascade_swin_b_coco.py',
           'configs/mona/retinanet_swin_l_voc.py',
           'configs/mona/upernet_swin_l_ade20k.py']


class ByteCounter:
    """A write-only file that counts bytes (nothing is kept)."""

    def __init__(self):
        self.size = 0

    def write(self, data):
        self.size += len(data)
        return len(data)

    def flush(self):
        pass


def saved_bytes(obj) -> int:
    counter = ByteCounter()
    torch.save(obj, counter)
    return counter.size


def adamw_state(params) -> dict:
    """AdamW's per-parameter state (step, exp_avg, exp_avg_sq)."""
    return dict(state={i: dict(step=torch.tensor(1.0),
                               exp_avg=torch.zeros_like(p),
                               exp_avg_sq=torch.zeros_like(p))
                       for i, p in enumerate(params)},
                param_groups=[])


def measure(config_path: str) -> dict:
    from mmengine.config import Config
    model = build_model_without_weights(Config.fromfile(config_path))
    full = model.state_dict()
    adapter = adapter_state_dict(model)
    params = list(model.parameters())
    trained = [p for p in params if p.requires_grad]
    sizes = OrderedDict(
        full_weights=saved_bytes(full),
        adapter_weights=saved_bytes(adapter),
        full_training=saved_bytes(dict(state_dict=full,
                                       optimizer=adamw_state(params))),
        adapter_training=saved_bytes(dict(state_dict=adapter,
                                          optimizer=adamw_state(trained))))
    backbone = [p for n, p in model.named_parameters()
                if n.startswith('backbone.')]
    sizes.update(
        params_total=sum(p.numel() for p in params),
        params_trained=sum(p.numel() for p in trained),
        params_backbone_trained=sum(p.numel() for p in backbone
                                    if p.requires_grad),
        params_backbone=sum(p.numel() for p in backbone))
    return sizes


def mib(n: int) -> str:
    return f'{n / 2**20:,.1f}'


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', default=CONFIGS)
    args = parser.parse_args()
    print(f'Machine: {platform.node()} ({platform.machine()}, '
          f'{platform.processor() or "cpu"}), torch {torch.__version__}, '
          f'mmadapter {mmadapter.__version__}\n')
    print('| config | parameters: trained / total (backbone trained) | '
          'weights: adapter / full MiB (ratio) | training ckpt with AdamW: '
          'adapter / full fine-tuning MiB (ratio) |')
    print('|---|---|---|---|')
    for path in args.configs:
        s = measure(path)
        print(f"| {path} | {s['params_trained'] / 1e6:.2f}M / "
              f"{s['params_total'] / 1e6:.2f}M "
              f"({s['params_backbone_trained'] / 1e6:.2f}M of "
              f"{s['params_backbone'] / 1e6:.2f}M) | "
              f"{mib(s['adapter_weights'])} / {mib(s['full_weights'])} "
              f"({100 * s['adapter_weights'] / s['full_weights']:.1f}%) | "
              f"{mib(s['adapter_training'])} / {mib(s['full_training'])} "
              f"({100 * s['adapter_training'] / s['full_training']:.1f}%) |",
              flush=True)


if __name__ == '__main__':
    main()
