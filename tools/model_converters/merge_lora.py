"""Fold LoRA into the frozen weights: a stock-backbone checkpoint.

    python tools/model_converters/merge_lora.py SRC DST \
        [--base BASE] [--config CFG] [--out-config OUT.py]

SRC: a full or adapter-only checkpoint of a model whose backbone has LoRA
(and no other adapter). DST: the same model with ``W + scaling * B A`` in
every adapted Linear layer, without LoRA keys; its ``meta.cfg`` (and
``--out-config``) is the config with the stock backbone (e.g.
``mmdet.SwinTransformer``), which loads DST strictly and gives the outputs
of the LoRA model.
"""
import argparse

import mmadapter  # noqa: F401  (registries)
from mmadapter.checkpoint import (
    add_trust_option,
    checkpoint_config,
    fold_lora,
    load_checkpoint_dict,
    read_checkpoint_file,
    script_loads,
    strip_adapter_record,
    write_checkpoint,
)
from mmadapter.cli.build import build_model_without_weights


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint of a LoRA model')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--base', help='base checkpoint, for an adapter-only '
                        'SRC (default: the one it records)')
    parser.add_argument('--config', help='config that builds the model '
                        '(default: the one the checkpoint records)')
    parser.add_argument('--out-config', help='also write the stock config')
    add_trust_option(parser)
    args = parser.parse_args()
    with script_loads(args.trust_checkpoint_types):
        checkpoint = read_checkpoint_file(args.src)
        cfg = checkpoint_config(checkpoint, args.config)
        model = build_model_without_weights(cfg)
        checkpoint = load_checkpoint_dict(model, checkpoint, base=args.base)
        state_dict, stock_cfg = fold_lora(model, cfg)
        out = strip_adapter_record(checkpoint)
        out['meta']['cfg'] = stock_cfg.pretty_text
        out['state_dict'] = state_dict
        write_checkpoint(out, args.dst)
        if args.out_config:
            stock_cfg.dump(args.out_config)
        dropped = len(checkpoint['state_dict']) - len(state_dict)
        print(f'Folded LoRA into the weights, dropped {dropped} LoRA tensors; '
              f'saved {len(state_dict)} tensors to {args.dst}. Backbone type: '
              f"{stock_cfg.model.backbone.type}"
              + (f'; config: {args.out_config}' if args.out_config else ''))


if __name__ == '__main__':
    main()
