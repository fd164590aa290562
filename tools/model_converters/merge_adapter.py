"""Merge an adapter-only checkpoint with its base weights into a full one.

    python tools/model_converters/merge_adapter.py SRC DST \
        [--base BASE] [--config CFG]

SRC: an adapter-only checkpoint (saved by AdapterCheckpointHook or
extract_adapter.py). The model is built from the config SRC records (or
``--config``); its frozen backbone weights come from the base it records (or
``--base``), checked by sha256. DST is a plain full checkpoint (``meta``,
``state_dict``) that the stock mmdet/mmseg tools load with the same config.
"""
import argparse

import mmadapter  # noqa: F401  (registries)
from mmadapter.checkpoint import (
    add_trust_option,
    checkpoint_config,
    merge_adapter_checkpoint,
    read_checkpoint_file,
    script_loads,
    write_checkpoint,
)
from mmadapter.cli.build import build_model_without_weights


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='adapter-only checkpoint')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--base', help='base checkpoint (default: the one '
                        'the adapter checkpoint records)')
    parser.add_argument('--config', help='config that builds the model '
                        '(default: the one the checkpoint records)')
    add_trust_option(parser)
    args = parser.parse_args()
    with script_loads(args.trust_checkpoint_types):
        checkpoint = read_checkpoint_file(args.src)
        model = build_model_without_weights(
            checkpoint_config(checkpoint, args.config))
        merged = merge_adapter_checkpoint(checkpoint, model, base=args.base)
        write_checkpoint(merged, args.dst)
        print(f'Saved {len(merged["state_dict"])} tensors to {args.dst} '
              '(optimizer and scheduler states are not carried over).')


if __name__ == '__main__':
    main()
