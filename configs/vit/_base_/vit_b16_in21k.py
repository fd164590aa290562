# ViT-B/16 pretrained on ImageNet-21k, as a timm-format state dict (keys
# blocks.N.attn.qkv..., patch_embed.proj, cls_token, pos_embed, norm), e.g.
#   m = timm.create_model('vit_base_patch16_224.augreg_in21k', pretrained=True)
#   torch.save(m.state_dict(), 'data/pretrained/vit-base-p16_in21k.pth')
# AdapterViT converts the names on load and resizes pos_embed to the grid of
# img_size. Settings add img_size and out_indices; methods set adapter and
# tuning. Arguments not given keep mmpretrain's VisionTransformer defaults.
vit_b16 = dict(
    type='mmadapter.AdapterViT',
    arch='base',
    patch_size=16,
    out_type='featmap',
    with_cls_token=True,
    final_norm=True,
    norm_cfg=dict(type='LN', eps=1e-6),
    interpolate_mode='bicubic',
    drop_path_rate=0.1,
    with_cp=False,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='data/pretrained/vit-base-p16_in21k.pth'))

# No weight decay on position/class embeddings and norms (ViT names its
# norms ln1/ln2; 'norm' catches Mona's own LayerNorm), as the Swin settings
# exempt Swin's position tables and norms.
vit_no_decay_keys = {
    'pos_embed': dict(decay_mult=0.),
    'cls_token': dict(decay_mult=0.),
    '.ln1.': dict(decay_mult=0.),
    '.ln2.': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
}
