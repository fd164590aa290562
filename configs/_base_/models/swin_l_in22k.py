# Swin-L pretrained on ImageNet-22k at 224x224, window 7: Microsoft's
# swin_large_patch4_window7_224_22k.pth as downloaded (the backbone converts
# its key naming on load). Arguments not given keep mmdet's SwinTransformer
# defaults (qkv bias, patch norm, no absolute position embedding, no
# dropout). Settings add out_indices and drop_path_rate; method configs add
# adapter and tuning (left out here: without them the backbone is the stock
# Swin, fully fine-tuned).
swin_l = dict(
    type='mmadapter.AdapterSwinTransformer',
    pretrain_img_size=224,
    embed_dims=192,
    depths=[2, 2, 18, 2],
    num_heads=[6, 12, 24, 48],
    window_size=7,
    init_cfg=dict(
        type='Pretrained',
        checkpoint='data/pretrained/swin_large_patch4_window7_224_22k.pth'))
