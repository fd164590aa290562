"""Adapter sets shared as peft shares adapters: safetensors + a JSON file
beside it, written from a .pth adapter-only checkpoint by the converter,
read without unpickling anything, and loaded by every loader with outputs
identical to the source model's."""
import json
import pickle
import sys

import pytest
import torch
from safetensors import safe_open

from conftest import TINY_SWIN
from e2e_utils import script_module
from mmadapter.apis.adapter_sets import load_adapter_set, read_task_checkpoint
from mmadapter.backbones import AdapterSwinTransformer
from mmadapter.checkpoint import (
    AdapterCheckpointError,
    file_sha256,
    load_adapter_checkpoint,
    save_adapter_checkpoint,
)
from mmadapter.checkpoint.adapter_set_files import adapter_set_checkpoint
from tiny_detectors import (
    MONA,
    assert_same_outputs,
    build,
    config,
    retinanet_cfg,
    trained,
    write_base,
)


@pytest.fixture(scope='module')
def shared(tmp_path_factory):
    """A trained tiny RetinaNet (Mona), its .pth adapter-only checkpoint and
    the pair the converter writes from it."""
    root = tmp_path_factory.mktemp('set_files')
    base = write_base(root / 'base.pth')
    cfg = retinanet_cfg(base, adapter=MONA)
    model = trained(cfg)
    pth = str(root / 'voc.pth')
    save_adapter_checkpoint(model, pth, config=config(cfg))
    converter = script_module('tools/model_converters/adapter2safetensors.py')
    argv = sys.argv
    sys.argv = ['adapter2safetensors.py', pth, str(root / 'voc_set'),
                '--name', 'voc']
    try:
        converter.main()
    finally:
        sys.argv = argv
    return dict(root=root, base=base, cfg=cfg, model=model, pth=pth,
                tensors=str(root / 'voc_set.safetensors'),
                json=str(root / 'voc_set.json'))


def test_the_pair_is_readable_without_unpickling(shared, monkeypatch):
    with open(shared['json']) as f:
        description = json.load(f)
    backbone = description['backbones']['backbone']
    assert description['format'] == 'mmadapter-adapter-set'
    assert description['name'] == 'voc'
    assert backbone['method'] == 'Mona'
    assert backbone['options'] == {'bottleneck': 8}
    assert backbone['architecture']['embed_dims'] == TINY_SWIN['embed_dims']
    assert backbone['architecture']['type'] == \
        'mmadapter.AdapterSwinTransformer'
    assert backbone['base']['sha256'] == file_sha256(shared['base'])
    assert description['tensors_sha256'] == file_sha256(shared['tensors'])
    with safe_open(shared['tensors'], framework='pt') as f:
        keys = set(f.keys())
    # nothing is unpickled on the way in
    monkeypatch.setattr(pickle, 'Unpickler', None)
    monkeypatch.setattr(torch, 'load', None)
    checkpoint = adapter_set_checkpoint(shared['json'])
    assert set(checkpoint['state_dict']) == keys
    assert any('.adapters.' in k for k in keys)
    assert any(k.startswith('bbox_head.') for k in keys)  # a task bundle


def test_round_trip_outputs_identical_to_the_source_model(shared):
    for path in (shared['tensors'], shared['json'], shared['pth']):
        model = build(shared['cfg'])
        load_adapter_checkpoint(model, path)
        assert_same_outputs(model.eval(), shared['model'])


def test_adapter_set_loader_and_task_reader_take_the_pair(shared):
    from_pth = read_task_checkpoint(shared['pth'])
    from_pair = read_task_checkpoint(shared['tensors'])
    for key in ('checkpoint', 'sha256'):
        assert from_pair.base[key] == from_pth.base[key]
    assert from_pair.frozen_not_in_base == from_pth.frozen_not_in_base
    assert from_pair.config.model == from_pth.config.model
    assert from_pair.checkpoint['state_dict'].keys() == \
        from_pth.checkpoint['state_dict'].keys()
    for key, value in from_pth.checkpoint['state_dict'].items():
        assert torch.equal(from_pair.checkpoint['state_dict'][key], value)

    backbone = AdapterSwinTransformer(
        **TINY_SWIN, tuning='fixed',
        init_cfg=dict(type='Pretrained', checkpoint=shared['base']))
    backbone.init_weights()
    load_adapter_set(backbone, 'voc', shared['tensors'], activate=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ours = backbone.eval()(x)[1:]
        theirs = shared['model'].backbone(x)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_a_mixed_up_or_incomplete_pair_is_refused(shared, tmp_path):
    import shutil
    stem = tmp_path / 'copy'
    shutil.copy(shared['json'], f'{stem}.json')
    with pytest.raises(FileNotFoundError, match=r'its tensors .*copy'
                       r'\.safetensors are missing'):
        adapter_set_checkpoint(f'{stem}.json')
    shutil.copy(shared['tensors'], f'{stem}.safetensors')
    from safetensors.torch import load_file, save_file
    tensors = load_file(f'{stem}.safetensors')
    first = next(iter(tensors))
    tensors[first] = tensors[first] + 1
    save_file(tensors, f'{stem}.safetensors')
    with pytest.raises(AdapterCheckpointError, match='sha256 differs'):
        adapter_set_checkpoint(f'{stem}.safetensors')
    (tmp_path / 'alone.safetensors').write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='alone.json is missing'):
        adapter_set_checkpoint(str(tmp_path / 'alone.safetensors'))


def test_the_converter_refuses_a_full_checkpoint(shared, tmp_path,
                                                 monkeypatch):
    full = tmp_path / 'full.pth'
    torch.save(dict(state_dict=shared['model'].state_dict()), full)
    converter = script_module('tools/model_converters/adapter2safetensors.py')
    monkeypatch.setattr(sys, 'argv', ['x', str(full), str(tmp_path / 'o')])
    with pytest.raises(SystemExit, match='Only adapter-only checkpoints'):
        converter.main()
    assert not (tmp_path / 'o.json').exists()
