"""Write an adapter-only checkpoint as a shareable adapter set: safetensors
for the tensors, a JSON file beside them for the method, its options, the
tuning policy, the architecture, the base checkpoint's sha256 and the config
(see mmadapter/checkpoint/adapter_set_files.py).

    python tools/model_converters/adapter2safetensors.py SRC DST [--name N]

SRC: an adapter-only .pth checkpoint (AdapterCheckpointHook; a full one:
convert it with extract_adapter.py first). DST: the path of the pair
without suffix, or either file's name (DST.safetensors and DST.json are
written). tools/multitask_infer.py, load_adapter_set and
load_adapter_checkpoint take the pair in place of SRC; reading it unpickles
nothing.
"""
import argparse

import mmadapter  # noqa: F401  (registries)
from mmadapter.checkpoint import (
    add_trust_option,
    read_checkpoint_file,
    save_adapter_set,
    script_loads,
)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='adapter-only .pth checkpoint')
    parser.add_argument('dst', help='output path (DST.safetensors and '
                        'DST.json)')
    parser.add_argument('--name', help='name recorded for the set '
                        '(default: the file name)')
    add_trust_option(parser)
    args = parser.parse_args()
    with script_loads(args.trust_checkpoint_types):
        checkpoint = read_checkpoint_file(args.src)
    try:
        tensors, description = save_adapter_set(checkpoint, args.dst,
                                                args.name)
    except mmadapter.checkpoint.AdapterCheckpointError as error:
        raise SystemExit(f'{args.src}: {error}') from None
    print(f"Saved {len(checkpoint['state_dict'])} tensors to {tensors} "
          f'and their description to {description}.')


if __name__ == '__main__':
    main()
