"""Print the parameter report of a model config, without loading weights.

    python tools/analysis/count_params.py CONFIG [--cfg-options k=v ...]

Works for mmdet, mmseg and mmpretrain configs (the model is built in the
config's ``default_scope``)."""
import argparse

from mmengine.config import Config, DictAction

from mmadapter.cli.build import build_model_without_weights
from mmadapter.parameter_report import parameter_report


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args()


def main():
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    model = build_model_without_weights(cfg)
    print(f'Config: {args.config}')
    backbone = getattr(model, 'backbone', model)
    if hasattr(backbone, 'trainable_summary'):
        print(backbone.trainable_summary())
    print(parameter_report(model).table())


if __name__ == '__main__':
    main()
