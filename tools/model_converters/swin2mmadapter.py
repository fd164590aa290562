"""Convert a Microsoft (official) Swin checkpoint to mmdet/mmadapter naming.

    python tools/model_converters/swin2mmadapter.py SRC DST

SRC: an ImageNet file of Microsoft's Swin-Transformer (keys under ``model``
or bare), or a whole-model file of its detection/segmentation forks (keys
under ``backbone.``). DST holds ``state_dict`` with mmdet's names under
``backbone.``, usable as ``init_cfg`` checkpoint of mmadapter's and of the
stock mmdet/mmseg Swin (``convert_weights`` not needed). mmadapter's backbone
also reads SRC directly; this tool makes a file stock tools accept.
"""
import argparse

import mmadapter  # noqa: F401  (registries)
from mmadapter.checkpoint import (
    add_trust_option,
    read_checkpoint_file,
    script_loads,
    write_checkpoint,
)
from mmadapter.checkpoint.official_files import convert_official_swin


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='Microsoft Swin checkpoint')
    parser.add_argument('dst', help='output path')
    add_trust_option(parser)
    args = parser.parse_args()
    with script_loads(args.trust_checkpoint_types):
        state_dict, report = convert_official_swin(
            read_checkpoint_file(args.src))
        write_checkpoint(dict(meta=dict(converted_from=args.src),
                              state_dict=state_dict), args.dst)
        print(report.summary())
        print(f'Saved {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
