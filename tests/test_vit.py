"""AdapterViT against mmpretrain's VisionTransformer, adapters inside it,
its pretrained loading (mmpretrain and timm naming), the simple feature
pyramid, layer-wise lr decay and the configs/vit configs."""
import copy
import glob
import os.path as osp

import pytest
import torch

from conftest import (
    PAPER_METHODS,
    TINY_VIT,
    assert_outputs_equal,
    images,
    stock_tiny_vit,
    tiny_vit,
)
from mmadapter.adapters import AdapterConfigError, MonaModule
from mmadapter.backbones import AdaptedViTLayer, AdapterViT
from mmadapter.backbones.pretrained import CheckpointMismatchError
from mmadapter.backbones.vit import CheckpointedViTLayer

TINY_ARCH = TINY_VIT['arch']
CONFIGS = sorted(glob.glob(osp.join(osp.dirname(__file__), '..', 'configs',
                                    'vit', '*.py')))


# -- drop-in equivalence --------------------------------------------------

@pytest.mark.parametrize('options', [
    dict(),
    dict(out_type='cls_token', out_indices=[3]),
    dict(out_type='raw', with_cls_token=True, final_norm=False),
    dict(with_cls_token=False, out_indices=[0, 1, 2, 3]),
    dict(out_type='avg_featmap', layer_scale_init_value=0.1),
])
@pytest.mark.parametrize('with_cp', [False, True])
def test_no_adapter_is_the_stock_vit(options, with_cp):
    stock = stock_tiny_vit(**options)
    stock.init_weights()
    ours = tiny_vit(**options, with_cp=with_cp)
    assert list(ours.state_dict()) == list(stock.state_dict())
    ours.load_state_dict(stock.state_dict(), strict=True)
    assert all(p.requires_grad for p in ours.parameters())
    assert all(isinstance(layer, CheckpointedViTLayer) == with_cp
               for layer in ours.layers)
    stock.eval(), ours.eval()
    x = images(72, 104)
    assert_outputs_equal(ours(x), stock(x))


def test_adapter_on_a_swiglu_vit_is_refused():
    with pytest.raises(AdapterConfigError, match='swiglu'):
        tiny_vit(adapter=dict(type='Mona'),
                 layer_cfgs=dict(ffn_type='swiglu_fused'))


def test_frozen_stages_still_freeze():
    model = tiny_vit(frozen_stages=2)
    assert not model.patch_embed.projection.weight.requires_grad
    assert not any(p.requires_grad for p in model.layers[1].parameters())
    assert all(p.requires_grad for p in model.layers[2].parameters())


# -- the patch grid and the class token ------------------------------------

@pytest.mark.parametrize('with_cls_token', [True, False])
def test_mona_receives_the_patch_grid_and_every_token(with_cls_token):
    model = tiny_vit(adapter=dict(type='Mona', bottleneck=8),
                     with_cls_token=with_cls_token).eval()
    seen = []
    for _, block, _ in model.blocks():
        block.adapters['post_ffn'].register_forward_hook(
            lambda m, args, out: seen.append((args[0].shape[1],
                                              tuple(args[1]))))
    model(images(100, 60, batch=1))  # grid ceil(100/8) x ceil(60/8)
    extra = 1 if with_cls_token else 0
    assert seen == [(13 * 8 + extra, (13, 8))] * 4


def test_mona_treats_patch_tokens_as_in_swin_with_a_class_token():
    """Same weights, same patch tokens: the patch part of Mona's output does
    not depend on a prepended class token (the convs see only patches)."""
    mona = MonaModule(16, bottleneck=8).eval()
    H, W = 5, 7
    patches = torch.randn(2, H * W, 16)
    cls_token = torch.randn(2, 1, 16)
    alone = mona(patches, (H, W))
    with_cls = mona(torch.cat([cls_token, patches], dim=1), (H, W))
    torch.testing.assert_close(with_cls[:, 1:], alone)


def test_mona_class_token_takes_the_token_wise_path_only():
    mona = MonaModule(16, bottleneck=8).eval()
    with torch.no_grad():
        mona.gamma.fill_(0.5)  # make the scaled norm visible
    cls_token = torch.randn(2, 1, 16)
    out = mona(torch.cat([cls_token, torch.randn(2, 12, 16)], dim=1), (3, 4))
    filtered = mona.norm(cls_token) * mona.gamma + cls_token * mona.gammax
    expected = cls_token + mona.up_proj(mona.act(mona.down_proj(filtered)))
    torch.testing.assert_close(out[:, :1], expected)


def test_adapted_layer_called_alone_needs_the_grid():
    model = tiny_vit(adapter=dict(type='Houlsby', bottleneck=8))
    layer = model.layers[0]
    tokens = torch.randn(1, 65, 32)
    with pytest.raises(ValueError, match='patch grid'):
        AdaptedViTLayer.forward(layer, tokens)
    assert layer.forward(tokens, (8, 8)).shape == tokens.shape


# -- shapes: non-square inputs, position embeddings -------------------------

@pytest.mark.parametrize('h,w', [(64, 64), (96, 160), (72, 40), (50, 130)])
def test_non_square_inputs_and_pos_embed_interpolation(h, w):
    stock = stock_tiny_vit()
    stock.init_weights()
    model = tiny_vit(adapter=dict(type='Mona', bottleneck=8))
    model.init_weights()
    model.load_state_dict(stock.state_dict(), strict=False)
    model.eval(), stock.eval()
    outs = model(images(h, w, batch=1))
    grid = (-(-h // 8), -(-w // 8))
    assert [tuple(o.shape) for o in outs] == [(1, 32, *grid)] * 2
    # the stock ViT (same interpolation) gives the same grid
    assert [o.shape for o in stock(images(h, w, batch=1))] == \
        [o.shape for o in outs]


# -- trainable parameters ---------------------------------------------------

VIT_ARCHS = {'vit-b': (768, 12), 'vit-l': (1024, 24)}


def vit_layer_params(c):
    # ln1 2C, qkv 3C^2+3C, proj C^2+C, ln2 2C, fc1 4C^2+4C, fc2 4C^2+C
    return 12 * c * c + 13 * c


def vit_total(c, layers, grid=14, patch=16):
    embed = 3 * patch * patch * c + c + c + (grid * grid + 1) * c
    return embed + layers * vit_layer_params(c) + 2 * c  # + final norm


def expected_vit_trainable(method, c, layers):
    per_layer = {
        'Mona': 2 * (133 * c + 9728),
        'Houlsby': 2 * (129 * c + 64),
        'AdaptFormer': 129 * c + 64,
        'LoRA': 2 * (64 * c + c * 64),  # q and v: A (64 x C) + B (C x 64)
        # two adapters, C -> C/2 -> C, 4 branches of rank 8 plus biases
        'LoRand': 2 * (2 * 4 * (8 * c + 64 + 8 * c // 2) + c // 2 + c),
        'BitFit': 11 * c,
        'NormTuning': 4 * c,
    }
    if method == 'Full':
        return vit_total(c, layers)
    if method == 'Fixed':
        return 0
    if method == 'Partial-1':
        return vit_layer_params(c)
    if method == 'BitFit':  # + patch embedding bias + final norm bias
        return layers * per_layer[method] + 2 * c
    if method == 'NormTuning':  # + final norm
        return layers * per_layer[method] + 2 * c
    return layers * per_layer[method]


@pytest.mark.parametrize('arch', sorted(VIT_ARCHS))
@pytest.mark.parametrize('method', sorted(PAPER_METHODS))
def test_trainable_count_matches_analytic(arch, method):
    with torch.device('meta'):  # shapes only: ViT-L builds instantly
        model = AdapterViT(arch=arch[-1], out_type='featmap',
                           **PAPER_METHODS[method])
    c, layers = VIT_ARCHS[arch]
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == expected_vit_trainable(method, c, layers)
    adapters = expected_vit_trainable(method, c, layers) \
        if method in ('Mona', 'Houlsby', 'AdaptFormer', 'LoRA', 'LoRand') \
        else 0
    assert total == vit_total(c, layers) + adapters


def test_vit_b_total_is_the_known_size():
    assert vit_total(768, 12) == 85_798_656  # ViT-B/16 without the head


def test_partial_n_counts_vit_layers():
    model = tiny_vit(tuning='partial-2')
    trainable = {n.split('.')[1] for n, p in model.named_parameters()
                 if p.requires_grad}
    assert trainable == {'2', '3'}


# -- gradient checkpointing -------------------------------------------------

@pytest.mark.parametrize('adapter', [None, dict(type='Mona', bottleneck=8)])
def test_checkpointing_is_used_in_training_only(adapter, monkeypatch):
    model = tiny_vit(adapter=adapter, with_cp=True)
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(torch.utils.checkpoint, 'checkpoint', counting)
    model.train()
    sum(o.sum() for o in model(images(batch=1))).backward()
    model.eval()
    with torch.no_grad():
        model(images(batch=1))
    assert len(calls) == 4  # one per layer, in training only


def test_copies_follow_their_own_input_grid():
    """The grid hooks are bound methods: a deep copy (as made by model
    wrappers and EMA) reads the grid of its own input."""
    model = tiny_vit(adapter=dict(type='Mona', bottleneck=8)).eval()
    twin = copy.deepcopy(model)
    model(images(64, 64, batch=1))
    out = twin(images(48, 96, batch=1))
    assert tuple(out[0].shape[2:]) == (6, 12)
    assert model.patch_grid == (8, 8) and twin.patch_grid == (6, 12)


# -- pretrained weights -----------------------------------------------------

TIMM_TINY = dict(patch_size=8, embed_dim=32, depth=4, num_heads=2,
                 mlp_ratio=2.0, num_classes=7)


def timm_vit(**kwargs):
    timm_vt = pytest.importorskip('timm.models.vision_transformer')
    torch.manual_seed(5)
    model = timm_vt.VisionTransformer(**{**TIMM_TINY, **kwargs}).eval()
    with torch.no_grad():  # non-trivial norms, biases and embeddings
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def pretrained_vit(path, **kwargs):
    model = tiny_vit(init_cfg=dict(type='Pretrained', checkpoint=str(path)),
                     **kwargs)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize('img_size', [32, 64])
def test_timm_checkpoint_loads_with_no_missing_backbone_keys(tmp_path,
                                                             img_size):
    reference = timm_vit(img_size=32)
    path = tmp_path / 'timm_vit.pth'
    torch.save(reference.state_dict(), path)
    model = pretrained_vit(path, img_size=img_size, out_type='raw',
                           out_indices=[3], adapter=dict(type='Mona'))
    report = model.pretrained_report
    assert report.missing == [] and report.shape_mismatch == []
    assert report.missing_adapter  # adapters are not in a base checkpoint
    assert sorted(report.unexpected) == ['head.bias', 'head.weight']
    assert model.pos_embed.shape[1] == (img_size // 8)**2 + 1
    if img_size == 32:  # same grid: the converted model computes the same
        plain = pretrained_vit(path, img_size=32, out_type='raw',
                               out_indices=[3])
        x = images(32, 32)
        with torch.no_grad():
            torch.testing.assert_close(plain(x)[0],
                                       reference.forward_features(x),
                                       atol=1e-5, rtol=1e-4)


def test_timm_checkpoint_with_a_grid_of_another_size(tmp_path):
    """pos_embed is resized on load as mmpretrain resizes it at run time."""
    reference = timm_vit(img_size=32)
    path = tmp_path / 'timm_vit.pth'
    torch.save({'model': reference.state_dict()}, path)  # DeiT/MAE wrapping
    model = pretrained_vit(path, img_size=64)
    from mmpretrain.models.utils import resize_pos_embed
    expected = resize_pos_embed(reference.pos_embed.detach(), (4, 4),
                                (8, 8), 'bicubic', 1)
    torch.testing.assert_close(model.pos_embed.detach(), expected)


def test_mae_style_checkpoint_with_fc_norm(tmp_path):
    reference = timm_vit(img_size=32, global_pool='avg', fc_norm=True)
    assert 'fc_norm.weight' in reference.state_dict()
    assert 'norm.weight' not in reference.state_dict()
    path = tmp_path / 'mae.pth'
    torch.save(reference.state_dict(), path)
    model = pretrained_vit(path, img_size=32, out_type='avg_featmap',
                           final_norm=False, out_indices=[3])
    assert model.pretrained_report.missing == []
    x = images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model(x)[0], reference.forward_head(
                reference.forward_features(x), pre_logits=True),
            atol=1e-5, rtol=1e-4)


def test_checkpoint_without_class_position_and_with_distillation_token(
        tmp_path):
    # no_embed_class: pos_embed covers the patches only
    reference = timm_vit(img_size=32, no_embed_class=True)
    path = tmp_path / 'no_embed_class.pth'
    torch.save(reference.state_dict(), path)
    model = pretrained_vit(path, img_size=32, out_type='raw',
                           out_indices=[3])
    assert model.pretrained_report.missing == []
    x = images(32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0],
                                   reference.forward_features(x),
                                   atol=1e-5, rtol=1e-4)
    # DeiT distilled: a second prefix token, dropped
    deit = pytest.importorskip('timm.models.deit')
    distilled = deit.VisionTransformerDistilled(img_size=32, **TIMM_TINY)
    path = tmp_path / 'deit_distilled.pth'
    torch.save(distilled.state_dict(), path)
    model = pretrained_vit(path, img_size=32)
    assert model.pretrained_report.missing == []
    assert 'dist_token' in model.pretrained_report.unexpected
    torch.testing.assert_close(
        model.pos_embed.detach(),
        torch.cat([distilled.pos_embed[:, :1], distilled.pos_embed[:, 2:]],
                  dim=1).detach())


def test_mmpretrain_checkpoint_of_a_whole_classifier(tmp_path):
    stock = stock_tiny_vit(img_size=32)
    stock.init_weights()
    path = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {f'backbone.{k}': v
                               for k, v in stock.state_dict().items()}},
               path)
    model = pretrained_vit(path, img_size=32, adapter=dict(type='LoRA'))
    assert model.pretrained_report.missing == []
    assert model.pretrained_report.unexpected == []
    stock.eval()
    x = images(32, 48)
    assert_outputs_equal(model(x), stock(x), atol=1e-6)


def test_unrelated_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'other.pth'
    torch.save({'conv1.weight': torch.zeros(8, 3, 3, 3)}, path)
    with pytest.raises(CheckpointMismatchError, match='No tensor'):
        pretrained_vit(path)


# -- the simple feature pyramid ---------------------------------------------

def test_simple_feature_pyramid_strides_and_channels():
    from mmadapter.models import SimpleFeaturePyramid
    neck = SimpleFeaturePyramid(in_channels=[32], out_channels=16)
    feats = (torch.randn(2, 32, 6, 10), )
    outs = neck(feats)  # stride 16 -> strides 4, 8, 16, 32
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 24, 40), (2, 16, 12, 20), (2, 16, 6, 10), (2, 16, 3, 5)]
    retina = SimpleFeaturePyramid(32, 16, scale_factors=(2.0, 1.0, 0.5),
                                  num_extra_levels=2,
                                  relu_before_extra_convs=True)
    outs = retina(feats)  # strides 8, 16, 32, 64, 128
    assert [tuple(o.shape[2:]) for o in outs] == [
        (12, 20), (6, 10), (3, 5), (2, 3), (1, 2)]
    mask_rcnn = SimpleFeaturePyramid(32, 16, num_extra_levels=1,
                                     extra_level_type='maxpool',
                                     norm_cfg=dict(type='BN'))
    outs = mask_rcnn(feats)
    assert len(outs) == 5 and tuple(outs[-1].shape[2:]) == (2, 3)
    sum(o.sum() for o in outs).backward()
    assert all(p.grad is not None for p in mask_rcnn.parameters())


def test_simple_feature_pyramid_rejects_bad_options():
    from mmadapter.models import SimpleFeaturePyramid
    with pytest.raises(ValueError, match='scale factor 3.0'):
        SimpleFeaturePyramid(32, scale_factors=(3.0, ))
    with pytest.raises(ValueError, match='extra_level_type'):
        SimpleFeaturePyramid(32, num_extra_levels=1, extra_level_type='avg')


def test_simple_feature_pyramid_is_registered():
    from mmengine.registry import MODELS
    neck = MODELS.build(dict(type='mmadapter.SimpleFeaturePyramid',
                             in_channels=32, out_channels=8))
    assert len(neck(torch.randn(1, 32, 4, 4))) == 4


# -- layer-wise lr decay ----------------------------------------------------

class _Segmentor(torch.nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(32, 2)


def test_layer_decay_follows_the_backbone_depth():
    from mmengine.optim import build_optim_wrapper
    model = _Segmentor(tiny_vit(tuning='partial-2'))
    wrapper = build_optim_wrapper(model, dict(
        constructor='mmadapter.BackboneLayerDecayOptimWrapperConstructor',
        optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05),
        paramwise_cfg=dict(layer_decay_rate=0.5,
                           custom_keys={'.ln1.': dict(decay_mult=0.)})))
    groups = {g['param_name']: g for g in wrapper.optimizer.param_groups}
    # 4 layers: depths 0 (embeddings) .. 5 (final norm, head); frozen ones
    # are left out
    assert not any(n.startswith(('backbone.layers.0', 'backbone.layers.1',
                                 'backbone.patch_embed')) for n in groups)
    assert groups['backbone.layers.2.attn.qkv.weight']['lr'] == 0.5**2
    assert groups['backbone.layers.3.attn.qkv.weight']['lr'] == 0.5
    assert groups['head.weight']['lr'] == 1.0
    assert groups['backbone.layers.3.ln1.weight']['weight_decay'] == 0.0
    assert groups['backbone.layers.3.ln2.weight']['weight_decay'] == 0.05


def test_layer_decay_needs_a_vit_backbone():
    from mmengine.optim import build_optim_wrapper
    with pytest.raises(TypeError, match='get_layer_depth'):
        build_optim_wrapper(torch.nn.Linear(2, 2), dict(
            constructor='mmadapter.BackboneLayerDecayOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1.0),
            paramwise_cfg=dict(layer_decay_rate=0.5)))


# -- configs/vit ------------------------------------------------------------

def tiny_config_options(cfg):
    """Shrink a configs/vit config to a 4-layer, 32-channel ViT/16 and
    small heads."""
    options = {'model.backbone.arch': dict(TINY_ARCH, _delete_=True)}
    if cfg.model.type == 'EncoderDecoder':
        options.update({
            'model.backbone.img_size': 64,
            'model.data_preprocessor.size': (64, 64),
            'model.backbone.out_indices': [0, 1, 2, 3],
            'model.neck.in_channels': [32] * 4,
            'model.neck.out_channels': 32,
            'model.decode_head.in_channels': [32] * 4,
            'model.decode_head.channels': 16,
            'model.auxiliary_head.in_channels': 32,
            'model.auxiliary_head.channels': 16,
        })
    else:
        options.update({
            'model.backbone.img_size': 128,
            'model.backbone.out_indices': [3],
            'model.neck.in_channels': 32,
            'model.neck.out_channels': 32,
            'model.bbox_head.in_channels': 32,
            'model.bbox_head.feat_channels': 32,
            'model.bbox_head.stacked_convs': 1,
        })
    if cfg.model.backbone.get('adapter') is not None:
        options['model.backbone.adapter.bottleneck' if 'bottleneck' in
                cfg.model.backbone.adapter else
                'model.backbone.adapter.rank'] = 8
    return options


def segmentation_batch(size=64):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size),
                                             ori_shape=(size, size)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 150, (1, size, size)))
        samples.append(sample)
    inputs = [torch.randint(0, 255, (3, size, size), dtype=torch.uint8)
              for _ in samples]
    return dict(inputs=inputs, data_samples=samples)


def detection_batch(h=128, w=160):
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for _ in range(2):
        sample = DetDataSample(metainfo=dict(
            img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[4.0, 6.0, 40.0, 50.0],
                                 [30.0, 10.0, 90.0, 60.0]]),
            labels=torch.tensor([3, 17]))
        samples.append(sample)
    inputs = [torch.randint(0, 255, (3, h, w), dtype=torch.uint8)
              for _ in samples]
    return dict(inputs=inputs, data_samples=samples)


def test_there_are_ten_vit_configs():
    names = {osp.basename(p) for p in CONFIGS}
    assert len(names) == 10
    for method in ('mona', 'adaptformer', 'lora', 'houlsby', 'full'):
        assert f'{method}_upernet_vit_b16_ade20k.py' in names
        assert f'{method}_retinanet_vit_b16_voc.py' in names


@pytest.mark.slow
@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_and_trains_one_iteration(path):
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    from mmadapter.cli.build import build_model_without_weights
    from mmadapter.engine.amp import fit_amp_to_device

    cfg = Config.fromfile(path)
    backbone = cfg.model.backbone
    assert backbone.type == 'mmadapter.AdapterViT'
    assert backbone.init_cfg.checkpoint == \
        'data/pretrained/vit-base-p16_in21k.pth'
    # as the Swin settings: ADE20K in FP32, VOC with AMP
    assert cfg.optim_wrapper.type == (
        'OptimWrapper' if 'ade20k' in path else 'AmpOptimWrapper')
    cfg.merge_from_dict(tiny_config_options(cfg))
    fit_amp_to_device(cfg)

    model = build_model_without_weights(cfg)  # the weights file is absent
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    backbone_trainable = [p for p in model.backbone.parameters()
                          if p.requires_grad]
    if backbone.get('adapter') is None:
        assert len(backbone_trainable) == len(
            list(model.backbone.parameters()))
    else:
        names = set(model.backbone.adapter_state_keys())
        assert {n for n, p in model.backbone.named_parameters()
                if p.requires_grad} == names
    if 'constructor' in cfg.optim_wrapper:  # Full: layer-wise lr decay
        groups = {g['param_name']: g
                  for g in optim_wrapper.optimizer.param_groups}
        for name in ('backbone.pos_embed', 'backbone.cls_token',
                     'backbone.layers.0.ln1.weight', 'backbone.ln1.bias'):
            assert groups[name]['weight_decay'] == 0.0
        assert groups['backbone.layers.0.attn.qkv.weight'][
            'weight_decay'] > 0

    batch = segmentation_batch() if cfg.model.type == 'EncoderDecoder' \
        else detection_batch()
    before = [p.detach().clone() for p in backbone_trainable]
    model.train()
    log_vars = model.train_step(batch, optim_wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert any(not torch.equal(b, p) for b, p in
               zip(before, backbone_trainable))
    model.eval()
    predictions = model.val_step(batch)
    assert len(predictions) == 2
    if cfg.model.type == 'EncoderDecoder':
        assert predictions[0].pred_sem_seg.shape == (64, 64)
    else:
        assert predictions[0].pred_instances.bboxes.shape[1] == 4
