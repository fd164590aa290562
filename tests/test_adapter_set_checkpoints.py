"""Adapter sets from adapter-only checkpoints (tiny RetinaNets): a set
loaded by name computes what the trained model's backbone computed, and
every refusal happens before anything changes."""
import pytest
import torch

from conftest import TINY_SWIN
from mmadapter.apis.adapter_sets import load_adapter_set, read_task_checkpoint
from mmadapter.backbones import AdapterSwinTransformer
from mmadapter.checkpoint import save_adapter_checkpoint
from mmadapter.insertion import AdapterSetError
from mmadapter.safe_load import load_file
from tiny_detectors import (
    LORA,
    MONA,
    build,
    config,
    retinanet_cfg,
    trained,
    write_base,
)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('sets')
    base = write_base(root / 'base.pth')
    paths = {}
    for name, adapter in (('mona', MONA), ('lora', LORA)):
        cfg = retinanet_cfg(base, adapter=adapter)
        model = trained(cfg, seed=len(paths) + 2)
        paths[name] = str(root / f'{name}.pth')
        save_adapter_checkpoint(model, paths[name], config=config(cfg))
        paths[f'{name}_model'] = model
    return dict(base=base, other_base=write_base(root / 'other.pth', seed=7),
                root=root, **paths)


def shared_backbone(base, **kwargs):
    backbone = AdapterSwinTransformer(
        **{**TINY_SWIN, **kwargs}, tuning='fixed',
        init_cfg=dict(type='Pretrained', checkpoint=base))
    backbone.init_weights()
    return backbone.eval()


def test_sets_by_name_compute_what_the_trained_backbones_computed(files):
    backbone = shared_backbone(files['base'])
    for name in ('mona', 'lora'):
        load_adapter_set(backbone, name, files[name])
    assert backbone.adapter_set_names() == ['mona', 'lora']
    x = torch.randn(1, 3, 64, 64)
    for name in ('mona', 'lora', 'mona'):
        backbone.activate_adapter_set(name)
        with torch.no_grad():
            ours = backbone(x)[1:]  # the RetinaNets use out_indices 1..3
            theirs = files[f'{name}_model'].backbone(x)
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)


def refused(backbone, path, match, name='task', **kwargs):
    keys = list(backbone.state_dict())
    names = backbone.adapter_set_names()
    with pytest.raises(AdapterSetError, match=match):
        load_adapter_set(backbone, name, path, **kwargs)
    assert backbone.adapter_set_names() == names
    assert list(backbone.state_dict()) == keys


def test_refusals(files, tmp_path):
    other = shared_backbone(files['other_base'])
    refused(other, files['mona'], r'was trained on the base .*base\.pth '
            r'\(sha256 [0-9a-f]{12}\.\.\.\), but this backbone holds another '
            r'base \(sha256 [0-9a-f]{12}\.\.\.\)')

    backbone = shared_backbone(files['base'])
    load_adapter_set(backbone, 'mona', files['mona'])
    refused(backbone, files['lora'], r"named 'mona' is already loaded "
            r"\(loaded: \['mona'\]\)", name='mona')

    wider_mlp = shared_backbone(files['base'], mlp_ratio=2)
    refused(wider_mlp, files['mona'], r'trained on a backbone of another '
            r'shape: mlp_ratio=4 \(here 2\)')

    cfg = retinanet_cfg(files['base'], adapter=MONA, tuning='bitfit')
    bitfit = str(tmp_path / 'bitfit.pth')
    save_adapter_checkpoint(trained(cfg), bitfit, config=config(cfg))
    refused(backbone, bitfit, r"tuning='bitfit': only adapter-tuned models")

    full = str(tmp_path / 'full.pth')
    torch.save(dict(state_dict=build(retinanet_cfg(files['base']))
                    .state_dict()), full)
    with pytest.raises(AdapterSetError, match='is not an adapter-only '
                       'checkpoint'):
        read_task_checkpoint(full)

    # the recorded config says Mona; the tensors are LoRA's
    forged = load_file(files['mona'])
    forged['state_dict'] = load_file(files['lora'])['state_dict']
    torch.save(forged, tmp_path / 'forged.pth')
    refused(backbone, str(tmp_path / 'forged.pth'),
            r'holds backbone tensors that are not its adapters')
