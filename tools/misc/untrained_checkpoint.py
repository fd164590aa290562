"""Save a config's model as training would start (weights initialised,
nothing trained): the baseline that shows what training achieved.

    python tools/misc/untrained_checkpoint.py CONFIG OUT.pth [--seed 0] \
        [--cfg-options KEY=VALUE ...]
    python tools/test.py CONFIG OUT.pth      # the untrained model's metrics
"""
import argparse
import os.path as osp
import sys

sys.path.insert(
    0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmengine.config import DictAction  # noqa: E402
from mmengine.runner import set_random_seed  # noqa: E402
from mmengine.runner.checkpoint import save_checkpoint  # noqa: E402

import mmadapter  # noqa: E402,F401
from mmadapter.cli.build import build_model_without_weights  # noqa: E402
from mmadapter.cli.runner_setup import load_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('out', help='checkpoint file to write')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed of the initialisation')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    set_random_seed(args.seed)
    model = build_model_without_weights(cfg)
    model.init_weights()  # what the Runner does before training
    save_checkpoint(
        dict(meta=dict(iter=0, seed=args.seed, note='untrained'),
             state_dict=model.state_dict()), args.out)
    print(f'Saved the untrained model of {args.config} to {args.out}')


if __name__ == '__main__':
    main()
