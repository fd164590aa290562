"""Extract an adapter-only checkpoint from a full one.

    python tools/model_converters/extract_adapter.py SRC DST \
        [--base BASE] [--config CFG]

SRC: a full checkpoint of an mmadapter model (e.g. saved by the stock
CheckpointHook). The model is built from the config SRC records (or
``--config``) to know which parameters its tuning policy trains. DST keeps
the trained parameters, the neck/head state, the config and the identity
(sha256) of the base: the backbone's init_cfg checkpoint, or ``--base``.
The base is read to check that it reproduces SRC's frozen backbone weights.
"""
import argparse
import os.path as osp

import mmadapter  # noqa: F401  (registries)
from mmadapter.checkpoint import (
    add_trust_option,
    checkpoint_config,
    extract_adapter_checkpoint,
    read_checkpoint_file,
    script_loads,
    write_checkpoint,
)
from mmadapter.cli.build import build_model_without_weights


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='full checkpoint')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--base', help='base checkpoint the frozen backbone '
                        "weights came from (default: the backbone's "
                        'init_cfg checkpoint)')
    parser.add_argument('--config', help='config that builds the model '
                        '(default: the one the checkpoint records)')
    add_trust_option(parser)
    args = parser.parse_args()
    with script_loads(args.trust_checkpoint_types):
        checkpoint = read_checkpoint_file(args.src)
        cfg = checkpoint_config(checkpoint, args.config)
        model = build_model_without_weights(cfg)
        adapter = extract_adapter_checkpoint(checkpoint, model,
                                             config=cfg.pretty_text,
                                             base=args.base)
        write_checkpoint(adapter, args.dst)
        kept, total = len(adapter['state_dict']), len(model.state_dict())
        print(f'Kept {kept} of {total} tensors; base: '
              + ', '.join(f"{p} <- {b['checkpoint']} (sha256 {b['sha256']})"
                          for p, b in adapter['meta']['adapter_checkpoint']
                          ['bases'].items()))
        print(f'Saved {args.dst}: {osp.getsize(args.dst) / 2**20:.1f} MiB, '
              f'from {osp.getsize(args.src) / 2**20:.1f} MiB')


if __name__ == '__main__':
    main()
