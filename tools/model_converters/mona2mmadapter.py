"""Convert a checkpoint of the official Mona code to mmadapter.

    python tools/model_converters/mona2mmadapter.py SRC DST [--config CFG]

SRC: a detector (mmdet 2.x) or segmentor (mmseg 0.x) checkpoint trained with
the official Mona code: Microsoft Swin naming ``backbone.layers.i.blocks.j``
with Mona modules ``my_module_1`` / ``my_module_2``. DST: mmdet 3 / mmseg 1
naming, the Mona modules as ``stages.i.blocks.j.adapters.post_attn`` /
``post_ffn``, neck and head keys kept, ``CLASSES`` / ``PALETTE`` moved to
``meta.dataset_meta``; optimizer state is dropped (it cannot resume an
mmdet 2.x run). With ``--config`` the result is checked against the model
that config builds, and not written unless every key fits.
"""
import argparse
import sys

import mmadapter  # noqa: F401  (registries)
from mmadapter.checkpoint import (
    add_trust_option,
    read_checkpoint_file,
    script_loads,
    write_checkpoint,
)
from mmadapter.checkpoint.official_files import (
    check_against_model,
    convert_official_mona,
    upgrade_meta,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint of the official Mona code')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--config', help='mmadapter config of the same model '
                        '(checks that every key fits it)')
    add_trust_option(parser)
    args = parser.parse_args()
    with script_loads(args.trust_checkpoint_types):
        checkpoint = read_checkpoint_file(args.src)
        state_dict, report = convert_official_mona(checkpoint)
        print(report.summary())
        if args.config:
            from mmengine.config import Config

            from mmadapter.cli.build import build_model_without_weights
            model = build_model_without_weights(Config.fromfile(args.config))
            check = check_against_model(state_dict, model)
            print(f'Against {args.config}: {check.summary()}')
            if not check.ok:
                sys.exit(f'Not written: the converted keys do not fit '
                         f'{args.config} (see above).')
        meta = upgrade_meta(checkpoint.get('meta'))
        if 'config' in meta:  # an mmdet 2.x config, not loadable by mmengine
            meta['source_config'] = meta.pop('config')
        meta['converted_from'] = args.src
        write_checkpoint(dict(meta=meta, state_dict=state_dict), args.dst)
        print(f'Saved {len(state_dict)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
