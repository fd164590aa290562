"""Analytic parameter counts of Swin backbones and of each method, from the
module structure in docs/official_recipes.md (not by walking the built
model)."""

ARCHS = {
    'swin-t': dict(embed_dims=96, depths=(2, 2, 6, 2),
                   num_heads=(3, 6, 12, 24)),
    'swin-b': dict(embed_dims=128, depths=(2, 2, 18, 2),
                   num_heads=(4, 8, 16, 32)),
    'swin-l': dict(embed_dims=192, depths=(2, 2, 18, 2),
                   num_heads=(6, 12, 24, 48)),
}
WINDOW = 7
TABLE = (2 * WINDOW - 1)**2  # relative position bias entries per head


def stage_dims(arch):
    c0 = arch['embed_dims']
    return [c0 * 2**i for i in range(4)]


def block_params(c, heads):
    # norm1 2C, qkv 3C^2+3C, proj C^2+C, table 169h, norm2 2C,
    # fc1 4C^2+4C, fc2 4C^2+C
    return 12 * c * c + 13 * c + TABLE * heads


def patch_embed_params(arch):
    c0 = arch['embed_dims']
    return 3 * 16 * c0 + c0 + 2 * c0  # 4x4 conv (with bias) + norm


def patch_embed_biases(arch):
    return 2 * arch['embed_dims']  # conv bias + norm bias


def patch_embed_norm(arch):
    return 2 * arch['embed_dims']


def swin_total(arch, out_indices=(0, 1, 2, 3)):
    dims = stage_dims(arch)
    total = patch_embed_params(arch)
    for i, (c, depth, heads) in enumerate(
            zip(dims, arch['depths'], arch['num_heads'])):
        total += depth * block_params(c, heads)
        if i < 3:
            total += 8 * c + 8 * c * c  # patch merging: norm(4C) + 4C->2C
    total += sum(2 * dims[i] for i in out_indices)
    return total


def swin_bias(arch, out_indices=(0, 1, 2, 3)):
    dims = stage_dims(arch)
    total = patch_embed_biases(arch)
    for i, (c, depth, heads) in enumerate(
            zip(dims, arch['depths'], arch['num_heads'])):
        # norm1, qkv (3C), proj, norm2, fc1 (4C), fc2 biases + the table
        total += depth * (11 * c + TABLE * heads)
        if i < 3:
            total += 4 * c  # patch merging norm bias (reduction has none)
    total += sum(dims[i] for i in out_indices)
    return total


def swin_norm(arch, out_indices=(0, 1, 2, 3)):
    dims = stage_dims(arch)
    total = patch_embed_norm(arch)
    for i, (c, depth) in enumerate(zip(dims, arch['depths'])):
        total += depth * 4 * c
        if i < 3:
            total += 8 * c
    total += sum(2 * dims[i] for i in out_indices)
    return total


def per_block_adapter(method, c):
    return {
        'Mona': 2 * (133 * c + 9728),
        'Houlsby': 2 * (129 * c + 64),
        'AdaptFormer': 129 * c + 64,
        'LoRA': 2 * (64 * c + c * 64),
        'LoRand': 2 * (97.5 * c + 512),
    }[method]


def adapter_total(method, arch):
    return int(sum(depth * per_block_adapter(method, c)
                   for c, depth in zip(stage_dims(arch), arch['depths'])))


def expected_trainable(method, arch, out_indices=(0, 1, 2, 3),
                       frozen_patch_embed=False):
    """Trainable backbone parameters of a method ('Full', 'Fixed',
    'BitFit', 'NormTuning', 'Partial-1' or an adapter name).

    ``frozen_patch_embed``: the patch embedding never trains (VOC: mmdet's
    frozen_stages=0, Microsoft's frozen_stages=1)."""
    frozen = frozen_patch_embed
    if method == 'Full':
        return swin_total(arch, out_indices) - frozen * patch_embed_params(
            arch)
    if method == 'Fixed':
        return 0
    if method == 'BitFit':
        return swin_bias(arch, out_indices) - frozen * patch_embed_biases(
            arch)
    if method == 'NormTuning':
        return swin_norm(arch, out_indices) - frozen * patch_embed_norm(arch)
    if method == 'Partial-1':
        return block_params(stage_dims(arch)[3], arch['num_heads'][3])
    return adapter_total(method, arch)
