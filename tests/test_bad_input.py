"""What a user sees on bad input: errors that name the problem and the fix."""
import pytest
import torch

from conftest import tiny_swin
from mmadapter.adapters import AdapterConfigError, build_adapter
from mmadapter.backbones.pretrained import CheckpointMismatchError


def test_unknown_adapter_lists_known_ones():
    with pytest.raises(AdapterConfigError) as err:
        tiny_swin(adapter=dict(type='Monna'))
    msg = str(err.value)
    assert "'Monna'" in msg
    for name in ('AdaptFormer', 'Houlsby', 'LoRA', 'LoRand', 'Mona'):
        assert name in msg


def test_adapter_without_type():
    with pytest.raises(AdapterConfigError, match='"type" key'):
        build_adapter(dict(bottleneck=64))


@pytest.mark.parametrize('cfg,pattern', [
    (dict(type='Mona', bottleneck=0), 'bottleneck must be an integer >= 1'),
    (dict(type='Mona', bottleneck='64'), 'bottleneck must be an integer'),
    (dict(type='Mona', dropout=1.5), r'dropout must be a number in \[0.0'),
    (dict(type='Mona', kernel_sizes=(3, 4)), 'odd positive integers'),
    (dict(type='Mona', activation='tanh'), 'activation must be one of'),
    (dict(type='Mona', sites=('post_mlp', )), 'sites must be one of'),
    (dict(type='Mona', bottlenek=64), r"unknown option\(s\) \['bottlenek'\]"),
    (dict(type='Houlsby', init='zeros'), 'init must be one of'),
    (dict(type='AdaptFormer', scale=-1), "'learnable'"),
    (dict(type='LoRA', rank=0), 'rank must be an integer >= 1'),
    (dict(type='LoRA', targets=('query', )), "target 'query' matches no"),
    (dict(type='LoRA', targets=()), 'at least one target'),
    (dict(type='LoRand', branches=0), 'branches must be an integer'),
])
def test_invalid_options(cfg, pattern):
    with pytest.raises(AdapterConfigError, match=pattern):
        build_adapter(cfg)


@pytest.mark.parametrize('tuning,pattern', [
    ('bitfitt', "Unknown tuning policy 'bitfitt'. Valid policies: full, "
     'fixed, bitfit, norm, partial-N, adapter'),
    ('partial-0', 'N >= 1'),
    ('partial-99', 'last 99 blocks, but the backbone has 8'),
    ('adapter', 'no adapter is configured'),
    (3, 'tuning must be a string'),
])
def test_bad_tuning_policy(tuning, pattern):
    with pytest.raises(AdapterConfigError, match=pattern):
        tiny_swin(tuning=tuning)


def test_missing_checkpoint_points_to_the_readme(tmp_path):
    model = tiny_swin(init_cfg=dict(type='Pretrained',
                                    checkpoint=str(tmp_path / 'nope.pth')))
    with pytest.raises(FileNotFoundError, match='README'):
        model.init_weights()


def test_checkpoint_that_matches_nothing_stops(tmp_path):
    path = tmp_path / 'resnet.pth'
    torch.save({'state_dict': {'conv1.weight': torch.zeros(64, 3, 7, 7),
                               'layer1.0.bn1.weight': torch.ones(64)}}, path)
    model = tiny_swin(adapter=dict(type='Mona', bottleneck=8),
                      init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    with pytest.raises(CheckpointMismatchError) as err:
        model.init_weights()
    msg = str(err.value)
    assert 'refusing to train from random weights' in msg
    assert 'conv1.weight' in msg and 'patch_embed' in msg


@pytest.mark.parametrize('shape', [(1, 3, 24, 64), (1, 3, 64, 31)])
def test_images_smaller_than_the_total_stride(shape):
    with pytest.raises(ValueError, match='at least its total stride 32'):
        tiny_swin()(torch.zeros(shape))


def test_vit_images_smaller_than_a_patch():
    from mmadapter.backbones import AdapterViT
    vit = AdapterViT(arch=dict(embed_dims=32, num_layers=1, num_heads=2,
                               feedforward_channels=64), img_size=32,
                     patch_size=16)
    with pytest.raises(ValueError, match='at least its total stride 16'):
        vit(torch.zeros(1, 3, 8, 32))


def test_frozen_everything_stops_before_training():
    from types import SimpleNamespace

    from mmadapter.engine import ParameterReportHook
    model = tiny_swin(tuning='fixed')
    runner = SimpleNamespace(model=model, logger=SimpleNamespace(
        info=lambda msg: None))
    with pytest.raises(RuntimeError, match='No parameter of the model trains'):
        ParameterReportHook().before_train(runner)


@pytest.mark.parametrize('loss', [float('nan'), float('inf')])
def test_non_finite_loss_stops_with_the_iteration(loss):
    from types import SimpleNamespace

    from mmadapter.engine import NonFiniteLossHook
    runner = SimpleNamespace(iter=41, epoch=2)
    hook = NonFiniteLossHook()
    hook.after_train_iter(runner, 0, outputs=dict(loss=torch.tensor(1.0)))
    with pytest.raises(RuntimeError, match='Non-finite loss at iteration 42'):
        hook.after_train_iter(
            runner, 0, outputs=dict(loss=torch.tensor(loss),
                                    loss_cls=torch.tensor(0.5)))
