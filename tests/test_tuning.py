"""Which weights change when training: frozen parameters stay bit-identical
and get no gradient or optimizer state; the trained ones move."""
import pytest
import torch

from conftest import tiny_swin, tiny_vit
from mmadapter.parameter_report import parameter_report

CASES = {
    'Mona': dict(adapter=dict(type='Mona', bottleneck=8)),
    'Houlsby': dict(adapter=dict(type='Houlsby', bottleneck=8)),
    'AdaptFormer': dict(adapter=dict(type='AdaptFormer', bottleneck=8)),
    'LoRA': dict(adapter=dict(type='LoRA', rank=4)),
    'LoRand': dict(adapter=dict(type='LoRand')),
    'BitFit': dict(tuning='bitfit'),
    'NormTuning': dict(tuning='norm'),
    'Partial-1': dict(tuning='partial-1'),
    'Full': dict(tuning='full'),
}


def train_steps(model, steps=3, size=(64, 64)):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(o.square().mean()
                   for o in model(torch.randn(2, 3, *size)))
        loss.backward()
        optimizer.step()
    return optimizer


@pytest.mark.parametrize('name', sorted(CASES))
@pytest.mark.parametrize('build', [tiny_swin, tiny_vit], ids=['swin', 'vit'])
def test_only_trainable_weights_change(build, name):
    model = build(**CASES[name], drop_path_rate=0.1)
    model.init_weights()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable
    if 'adapter' in CASES[name]:
        assert trainable == set(model.adapter_state_keys())
    train_steps(model, size=(48, 80))
    for n, p in model.named_parameters():
        if n in trainable:
            continue
        assert p.grad is None, n
        assert torch.equal(p, before[n]), f'frozen {n} changed'
    # LoRA's B starts at zero, so its A gets no gradient on step one; by
    # step three every trained tensor has moved.
    changed = {n for n in trainable
               if not torch.equal(dict(model.named_parameters())[n],
                                  before[n])}
    assert changed == trainable


def test_frozen_parameters_get_no_optimizer_state_with_mmengine():
    from mmengine.optim import build_optim_wrapper
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8))
    wrapper = build_optim_wrapper(
        model, dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05)))
    loss = sum(o.square().mean() for o in model(torch.randn(1, 3, 64, 64)))
    wrapper.update_params(loss)
    with_state = {id(p) for p in wrapper.optimizer.state}
    for n, p in model.named_parameters():
        assert (id(p) in with_state) == p.requires_grad, n


def test_policy_is_reapplied_after_init_weights():
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8))
    for p in model.parameters():
        p.requires_grad_(True)
    model.init_weights()
    report = parameter_report(model)
    assert report.backbone_trainable == report.backbone_adapter > 0


def test_adapter_default_policy_freezes_output_norms():
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8))
    for i in range(4):
        assert not any(p.requires_grad
                       for p in getattr(model, f'norm{i}').parameters())


def test_partial_n_counts_blocks_across_stages():
    model = tiny_swin(tuning='partial-3')
    trainable = {n.split('.blocks.')[0] + '.blocks.' +
                 n.split('.blocks.')[1].split('.')[0]
                 for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {'stages.2.blocks.1', 'stages.3.blocks.0',
                         'stages.3.blocks.1'}


def test_parameter_report_table_for_a_detector():
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    detector = MODELS.build(dict(
        type='RetinaNet',
        data_preprocessor=dict(type='DetDataPreprocessor'),
        backbone=dict(type='mmadapter.AdapterSwinTransformer', embed_dims=32,
                      depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                      out_indices=(1, 2, 3), adapter=dict(type='Mona',
                                                          bottleneck=8)),
        neck=dict(type='FPN', in_channels=[64, 128, 256], out_channels=32,
                  start_level=0, add_extra_convs='on_input', num_outs=5),
        bbox_head=dict(
            type='RetinaHead', num_classes=3, in_channels=32,
            feat_channels=32,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                  strides=[8, 16, 32, 64, 128]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder'),
            loss_cls=dict(type='FocalLoss', use_sigmoid=True),
            loss_bbox=dict(type='L1Loss'))))
    report = parameter_report(detector)
    table = report.table()
    assert 'backbone (trainable)' in table and 'neck' in table \
        and 'bbox_head' in table
    neck = sum(p.numel() for p in detector.neck.parameters())
    assert ('neck', neck, neck) in report.groups
    assert report.backbone_trainable == report.backbone_adapter


def test_frozen_prefix_builds_no_graph():
    """Stages before the first trainable parameter record no autograd graph
    (nothing of them is kept for backward)."""
    model = tiny_swin(tuning='partial-1').train()
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.requires_grad for o in outs] == [False, False, False, True]
    frozen = tiny_swin(tuning='fixed').train()
    assert not any(o.requires_grad for o in frozen(torch.randn(1, 3, 64, 64)))
