"""The training configs under configs/: every method x setting config and the
toy configs load, build their model and optimizer, train exactly the backbone
parameters their method should (analytic counts of docs/official_recipes.md),
and state the three settings of the paper's tables."""
import copy
import functools
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS

from mmadapter.cli.build import build_model_without_weights
from swin_counts import ARCHS, expected_trainable, swin_total

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'

#: method folder -> (name in swin_counts, backbone adapter, tuning)
METHODS = {
    'mona': ('Mona', dict(type='Mona', bottleneck=64), 'adapter'),
    'adaptformer': ('AdaptFormer',
                    dict(type='AdaptFormer', bottleneck=64, scale=0.1,
                         init='trunc_normal'),
                    'adapter'),
    'lora': ('LoRA', dict(type='LoRA', rank=64, alpha=1,
                          targets=('q', 'v')), 'adapter'),
    'houlsby': ('Houlsby', dict(type='Houlsby', bottleneck=64), 'adapter'),
    'lorand': ('LoRand', dict(type='LoRand'), 'adapter'),
    'full': ('Full', None, 'full'),
    'fixed': ('Fixed', None, 'fixed'),
    'bitfit': ('BitFit', None, 'bitfit'),
    'normtuning': ('NormTuning', None, 'norm'),
    'partial1': ('Partial-1', None, 'partial-1'),
}

#: setting -> Swin variant, its out_indices, whether the patch embedding is
#: frozen (mmdet's frozen_stages=0), scope, lr, drop path, optim wrapper
SETTINGS = {
    'cascade_swin_b_coco': dict(arch=ARCHS['swin-b'], out_indices=(0, 1, 2, 3),
                                frozen_patch_embed=False, scope='mmdet',
                                lr=1e-4, drop_path=0.3,
                                optim_wrapper='AmpOptimWrapper'),
    'retinanet_swin_l_voc': dict(arch=ARCHS['swin-l'], out_indices=(1, 2, 3),
                                 frozen_patch_embed=True, scope='mmdet',
                                 lr=1e-4, drop_path=0.2,
                                 optim_wrapper='AmpOptimWrapper'),
    'upernet_swin_l_ade20k': dict(arch=ARCHS['swin-l'],
                                  out_indices=(0, 1, 2, 3),
                                  frozen_patch_embed=False, scope='mmseg',
                                  lr=6e-5, drop_path=0.3,
                                  optim_wrapper='OptimWrapper'),
}
#: the official Mona ADE20K config's extra custom key: backbone parameters
#: whose longest matching key is 'backbone' (Mona's own LayerNorms) decay
MONA_ADE_KEYS = {'backbone': dict(lr_mult=1.0)}
#: Mona's own ADE20K recipe (the baselines keep the setting's)
MONA_ADE = dict(lr=3e-4, drop_path=0.2)

TOY_ARCH = dict(embed_dims=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
#: toy config -> the real setting it shrinks
TOYS = {
    'retinanet_swin_toy_voc': 'retinanet_swin_l_voc',
    'cascade_swin_toy_coco': 'cascade_swin_b_coco',
    'upernet_swin_toy_ade20k': 'upernet_swin_l_ade20k',
}

METHOD_CONFIGS = [(m, s) for m in METHODS for s in SETTINGS]
NO_DECAY_KEYS = ('absolute_pos_embed', 'relative_position_bias_table',
                 'norm')


@functools.lru_cache(maxsize=None)
def load(relative_path: str) -> Config:
    """The parsed config (cached: parsing the stock bases is slow; tests
    copy before changing anything)."""
    return Config.fromfile(str(CONFIG_DIR / relative_path))


def build_without_weights(cfg: Config):
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.init_cfg = None
    return build_model_without_weights(cfg)


def trainable_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def flatten(value, prefix=''):
    """{'a.b.0.c': leaf} for nested dicts and lists."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)) and any(
            isinstance(v, (dict, list, tuple)) for v in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat = {}
    for key, item in items:
        flat.update(flatten(item, f'{prefix}.{key}' if prefix else str(key)))
    return flat


def datasets_of(dataset_cfg):
    """Leaf dataset configs under wrappers (RepeatDataset, ConcatDataset)."""
    if 'datasets' in dataset_cfg:
        return [d for sub in dataset_cfg['datasets'] for d in datasets_of(sub)]
    if 'dataset' in dataset_cfg:
        return datasets_of(dataset_cfg['dataset'])
    return [dataset_cfg]


@pytest.fixture
def amp_on_cpu(monkeypatch):
    """AmpOptimWrapper refuses to build without a GPU; on CPU pretend one
    exists (its GradScaler then disables itself)."""
    if not torch.cuda.is_available():
        monkeypatch.setattr(
            'mmengine.optim.optimizer.amp_optimizer_wrapper.'
            'is_cuda_available', lambda: True)


def check_optimizer(model, cfg, decaying_backbone_norms=False):
    """Every trainable parameter is in the optimizer with the configured lr;
    Swin's position tables and all norms get no weight decay, except backbone
    norms with ``decaying_backbone_norms`` (the 'backbone' custom key)."""
    optim_wrapper = build_optim_wrapper(model,
                                        copy.deepcopy(cfg.optim_wrapper))
    base = cfg.optim_wrapper.optimizer
    group_of = {}
    for group in optim_wrapper.optimizer.param_groups:
        for param in group['params']:
            group_of[param] = group
    names = {p: n for n, p in model.named_parameters()}
    optimised = {names[p] for p, g in group_of.items() if p.requires_grad}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert optimised == trainable
    for param, group in group_of.items():
        if not param.requires_grad:
            continue
        name = names[param]
        assert group['lr'] == pytest.approx(base.lr), name
        no_decay = any(key in name for key in NO_DECAY_KEYS)
        if decaying_backbone_norms and name.startswith('backbone.'):
            no_decay = any(key in name for key in NO_DECAY_KEYS
                           if len(key) > len('backbone'))
        expected_decay = 0.0 if no_decay else base.weight_decay
        assert group['weight_decay'] == pytest.approx(expected_decay), name
    return optim_wrapper


# --------------------------------------------------- method x setting configs
@pytest.mark.parametrize('method,setting', METHOD_CONFIGS)
def test_method_config_builds_and_trains_the_right_parameters(
        method, setting, amp_on_cpu):
    cfg = load(f'{method}/{setting}.py')
    name, adapter, tuning = METHODS[method]
    spec = SETTINGS[setting]
    backbone_cfg = cfg.model.backbone
    assert backbone_cfg.get('adapter') == adapter
    assert backbone_cfg.tuning == tuning
    assert cfg.default_scope == spec['scope']

    model = build_without_weights(cfg)
    backbone = model.backbone
    assert type(backbone).__name__ == 'AdapterSwinTransformer'
    assert trainable_count(backbone) == expected_trainable(
        name, spec['arch'], spec['out_indices'],
        frozen_patch_embed=spec['frozen_patch_embed'])
    assert backbone_cfg.get('frozen_stages', -1) == (
        0 if spec['frozen_patch_embed'] else -1)
    adapter_params = expected_trainable(name, spec['arch']) \
        if adapter is not None else 0
    assert sum(p.numel() for p in backbone.parameters()) == swin_total(
        spec['arch'], spec['out_indices']) + adapter_params
    # neck and heads train fully
    for child_name, child in model.named_children():
        if child_name not in ('backbone', 'data_preprocessor'):
            assert all(p.requires_grad for p in child.parameters()), \
                child_name

    mona_ade = (method, setting) == ('mona', 'upernet_swin_l_ade20k')
    optim_wrapper = check_optimizer(model, cfg,
                                    decaying_backbone_norms=mona_ade)
    assert type(optim_wrapper).__name__ == spec['optim_wrapper']
    if mona_ade:  # the official config's weight decay on Mona's LayerNorms
        groups = {p: g for g in optim_wrapper.optimizer.param_groups
                  for p in g['params']}
        norms = [(n, groups[p]['weight_decay'])
                 for n, p in model.named_parameters()
                 if '.adapters.' in n and '.norm.' in n]
        assert len(norms) == 2 * 2 * 24  # weight + bias, two per block
        assert all(decay == 0.01 for _, decay in norms), norms[:2]


@pytest.mark.parametrize('method,setting', METHOD_CONFIGS)
def test_method_config_differs_from_mona_only_in_the_method(method, setting):
    mona = flatten(load(f'mona/{setting}.py').to_dict())
    other = flatten(load(f'{method}/{setting}.py').to_dict())
    changed = {k for k in mona.keys() | other.keys()
               if mona.get(k, 'missing') != other.get(k, 'missing')}
    # the method's piece (configs/<method>/_base_/method.py, also kept as
    # the top-level variable ``method``) goes into the backbone
    method_keys = {
        k for k in changed
        if k in ('model.backbone.tuning', 'method.tuning') or k.startswith(
            ('model.backbone.adapter', 'method.adapter'))
    }
    ade_keys = {'model.backbone.drop_path_rate', 'optim_wrapper.optimizer.lr',
                'optim_wrapper.paramwise_cfg.custom_keys.backbone.lr_mult'}
    if method == 'mona':
        assert not changed
    elif setting == 'upernet_swin_l_ade20k':
        assert changed == method_keys | ade_keys
    else:
        assert changed == method_keys


def test_ade20k_learning_rates_and_drop_path():
    setting = 'upernet_swin_l_ade20k'
    mona = load(f'mona/{setting}.py')
    assert mona.optim_wrapper.optimizer.lr == MONA_ADE['lr']
    assert mona.model.backbone.drop_path_rate == MONA_ADE['drop_path']
    custom_keys = mona.optim_wrapper.paramwise_cfg.custom_keys
    assert custom_keys == {**{key: dict(decay_mult=0.)
                              for key in NO_DECAY_KEYS}, **MONA_ADE_KEYS}
    for method in METHODS:
        if method == 'mona':
            continue
        cfg = load(f'{method}/{setting}.py')
        assert cfg.optim_wrapper.optimizer.lr == SETTINGS[setting]['lr']
        assert cfg.model.backbone.drop_path_rate == \
            SETTINGS[setting]['drop_path']
        assert 'backbone' not in cfg.optim_wrapper.paramwise_cfg.custom_keys


def test_partial1_is_14_53_percent_of_swin_b():
    arch = ARCHS['swin-b']
    share = expected_trainable('Partial-1', arch) / swin_total(arch)
    assert round(100 * share, 2) == 14.53


# ---------------------------------------------------------- the three settings
@pytest.mark.parametrize('setting', SETTINGS)
def test_setting_shared_recipe(setting):
    cfg = load(f'_base_/{setting}.py')
    spec = SETTINGS[setting]
    assert cfg.custom_imports == dict(imports=['mmadapter'],
                                      allow_failed_imports=False)
    assert [h.type for h in cfg.custom_hooks] == [
        'mmadapter.ParameterReportHook', 'mmadapter.NonFiniteLossHook',
        'mmadapter.RandomStateHook', 'mmadapter.DatasetCheckHook',
        'mmadapter.CheckpointTypesHook'
    ]
    assert all(HOOKS.build(h) is not None for h in cfg.custom_hooks)

    backbone = cfg.model.backbone
    assert backbone.type == 'mmadapter.AdapterSwinTransformer'
    for key, value in spec['arch'].items():
        assert backbone[key] == (list(value)
                                 if isinstance(value, tuple) else value)
    assert backbone.window_size == 7 and backbone.pretrain_img_size == 224
    assert tuple(backbone.out_indices) == spec['out_indices']
    assert backbone.drop_path_rate == spec['drop_path']
    size = 'base' if spec['arch']['embed_dims'] == 128 else 'large'
    assert backbone.init_cfg == dict(
        type='Pretrained',
        checkpoint=f'data/pretrained/swin_{size}_patch4_window7_224_22k.pth')
    assert 'adapter' not in backbone and 'tuning' not in backbone

    optim = cfg.optim_wrapper
    assert optim.type == spec['optim_wrapper']
    if optim.type == 'AmpOptimWrapper':
        assert optim.loss_scale == 'dynamic'
    assert optim.get('constructor', 'DefaultOptimWrapperConstructor') == \
        'DefaultOptimWrapperConstructor'
    assert optim.optimizer.type == 'AdamW'
    assert tuple(optim.optimizer.betas) == (0.9, 0.999)
    assert optim.optimizer.lr == spec['lr']
    assert optim.paramwise_cfg.custom_keys == {
        key: dict(decay_mult=0.)
        for key in NO_DECAY_KEYS
    }


def test_coco_setting():
    cfg = load('_base_/cascade_swin_b_coco.py')
    model = cfg.model
    assert model.type == 'CascadeRCNN'
    assert model.neck.in_channels == [128, 256, 512, 1024]
    heads = model.roi_head.bbox_head
    assert len(heads) == 3
    for head in heads:
        assert head.type == 'ConvFCBBoxHead'
        assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
        assert head.norm_cfg.type == 'SyncBN'
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
        assert head.reg_decoded_bbox is True
        assert head.num_classes == 80

    pipeline = [t.type for t in cfg.train_pipeline]
    assert pipeline == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip',
                        'RandomChoice', 'PackDetInputs']
    assert cfg.train_pipeline[2].prob == 0.5
    multiscale, crop = cfg.train_pipeline[3].transforms
    short_sides = [min(s) for s in multiscale[0].scales]
    assert short_sides == list(range(480, 801, 32))
    assert [t.type for t in crop] == [
        'RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize'
    ]
    assert [min(s) for s in crop[0].scales] == [400, 500, 600]
    assert crop[1].crop_type == 'absolute_range'
    assert tuple(crop[1].crop_size) == (384, 600)

    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    warmup, steps = cfg.param_scheduler
    assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR', False,
                                                          500)
    assert warmup.start_factor == 0.001
    assert (steps.type, steps.milestones, steps.end) == ('MultiStepLR',
                                                         [27, 33], 36)
    assert cfg.train_cfg.type == 'EpochBasedTrainLoop'
    assert cfg.train_cfg.max_epochs == 36
    assert cfg.train_dataloader.batch_size == 1
    assert cfg.auto_scale_lr.base_batch_size == 8
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'CocoMetric'
        assert evaluator.metric == ['bbox', 'segm']
    assert cfg.val_dataloader.dataset.ann_file == \
        'annotations/instances_val2017.json'


def test_voc_setting():
    cfg = load('_base_/retinanet_swin_l_voc.py')
    model = cfg.model
    assert model.type == 'RetinaNet'
    assert model.neck.in_channels == [384, 768, 1536]
    assert (model.neck.start_level, model.neck.add_extra_convs,
            model.neck.num_outs) == (0, 'on_input', 5)
    assert model.bbox_head.type == 'RetinaHead'
    assert model.bbox_head.num_classes == 20

    train = cfg.train_dataloader.dataset
    assert (train.type, train.times) == ('RepeatDataset', 3)
    assert [d.ann_file for d in datasets_of(train)] == [
        'VOC2007/ImageSets/Main/trainval.txt',
        'VOC2012/ImageSets/Main/trainval.txt'
    ]
    for voc in datasets_of(train):
        resize, flip = voc.pipeline[2:4]
        assert (resize.type, tuple(resize.scale), resize.keep_ratio) == (
            'Resize', (1000, 600), True)
        assert (flip.type, flip.prob) == ('RandomFlip', 0.5)
    assert cfg.test_dataloader.dataset.ann_file == \
        'VOC2007/ImageSets/Main/test.txt'

    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert len(cfg.param_scheduler) == 1  # no warmup
    steps = cfg.param_scheduler[0]
    assert (steps.type, steps.by_epoch, steps.milestones) == ('MultiStepLR',
                                                              True, [3])
    assert cfg.train_cfg.max_epochs == 4
    assert cfg.train_dataloader.batch_size == 1
    assert cfg.auto_scale_lr.base_batch_size == 2
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert (evaluator.type, evaluator.metric, evaluator.eval_mode,
                evaluator.legacy_coordinate) == (
            'mmadapter.VOCMetric', 'mAP', '11points', False)
    # boxes of every size train (mmdet 2.11's min_size=None)
    for voc in datasets_of(train):
        assert voc.filter_cfg.bbox_min_size is None
        assert voc.filter_cfg.filter_empty_gt is True


def test_ade20k_setting():
    cfg = load('_base_/upernet_swin_l_ade20k.py')
    model = cfg.model
    assert model.type == 'EncoderDecoder'
    head, aux = model.decode_head, model.auxiliary_head
    assert (head.type, head.in_channels, head.channels,
            tuple(head.pool_scales)) == ('UPerHead', [192, 384, 768, 1536],
                                         512, (1, 2, 3, 6))
    assert (aux.type, aux.in_channels, aux.in_index,
            aux.loss_decode.loss_weight) == ('FCNHead', 768, 2, 0.4)
    for h in (head, aux):
        assert h.num_classes == 150 and h.norm_cfg.type == 'SyncBN'
    assert tuple(model.data_preprocessor.size) == (512, 512)
    crop = [t for t in cfg.train_pipeline if t.type == 'RandomCrop'][0]
    assert tuple(crop.crop_size) == (512, 512)
    assert [t.type for t in cfg.test_dataloader.dataset.pipeline] == [
        'LoadImageFromFile', 'Resize', 'LoadAnnotations', 'PackSegInputs'
    ]  # single scale

    assert cfg.optim_wrapper.optimizer.weight_decay == 0.01
    schedule, = cfg.param_scheduler  # mmcv 1.x's poly with warm-up
    assert schedule == dict(type='mmadapter.PolyLRWithWarmup', power=1.0,
                            eta_min=0.0, warmup_iters=1500, warmup_ratio=1e-6,
                            begin=0, end=160000, by_epoch=False)
    assert (cfg.train_cfg.type, cfg.train_cfg.max_iters) == (
        'IterBasedTrainLoop', 160000)
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert (evaluator.type, evaluator.iou_metrics) == ('IoUMetric',
                                                           ['mIoU'])


ALL_CONFIGS = [f'{m}/{s}.py' for m, s in METHOD_CONFIGS] + \
    [f'toy/{t}.py' for t in TOYS]


@pytest.mark.parametrize('path', ALL_CONFIGS)
def test_every_data_path_follows_data_root(path):
    """One ``data_root`` per config; every dataset root and evaluator
    annotation file derives from it."""
    cfg = load(path)
    for split in ('train', 'val', 'test'):
        for dataset in datasets_of(cfg[f'{split}_dataloader'].dataset):
            assert dataset.data_root == cfg.data_root
        evaluator = cfg.get(f'{split}_evaluator')
        if evaluator is not None and evaluator.get('ann_file'):
            assert evaluator.ann_file.startswith(cfg.data_root)


# ---------------------------------------------------------------- toy configs
@pytest.mark.parametrize('toy', TOYS)
def test_toy_config_builds_and_trains_mona_only(toy):
    cfg = load(f'toy/{toy}.py')
    real = load(f'mona/{TOYS[toy]}.py')
    out_indices = tuple(cfg.model.backbone.out_indices)
    assert out_indices == SETTINGS[TOYS[toy]]['out_indices']
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.backbone.adapter == dict(type='Mona', bottleneck=64)

    model = build_without_weights(cfg)
    assert trainable_count(model.backbone) == expected_trainable(
        'Mona', TOY_ARCH, out_indices)
    assert not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    assert type(model.backbone).__name__ == 'AdapterSwinTransformer'
    assert part_types(cfg) == part_types(real)

    optim_wrapper = check_optimizer(
        model, cfg, decaying_backbone_norms=toy == 'upernet_swin_toy_ade20k')
    assert type(optim_wrapper).__name__ == 'OptimWrapper'  # no AMP

    for split in ('val', 'test'):
        evaluator, real_evaluator = cfg[f'{split}_evaluator'], \
            real[f'{split}_evaluator']
        assert evaluator.type == real_evaluator.type
        for key in ('metric', 'iou_metrics', 'eval_mode'):
            assert evaluator.get(key) == real_evaluator.get(key)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.by_epoch is False
    assert checkpoint.interval == cfg.train_cfg.max_iters
    assert cfg.train_dataloader.batch_size == 2


def part_types(cfg: Config) -> dict:
    """Types of everything in the model but the backbone and norm layers:
    detector, neck, heads, losses, assigners, samplers."""
    return {
        key: value
        for key, value in flatten(cfg.model.to_dict()).items()
        if key.endswith('type') and not key.startswith('backbone.')
        and 'norm_cfg' not in key
    }
