"""Several named adapter sets on one backbone (both backbones, every
method): adding, switching and deleting keep the single-set model exact,
change no frozen tensor, keep the other sets out of training, and refuse
bad requests with the error a user needs."""
import copy

import pytest
import torch

from conftest import (
    TINY_ADAPTERS,
    assert_outputs_equal,
    images,
    no_dropout,
    tiny_swin,
    tiny_vit,
)
from mmadapter.insertion import AdapterSetError

BACKBONES = {'swin': tiny_swin, 'vit': tiny_vit}
METHODS = sorted(TINY_ADAPTERS)
#: a second method per method, to mix site adapters and LoRA
OTHER = {'Mona': 'LoRA', 'LoRA': 'Mona', 'Houlsby': 'AdaptFormer',
         'AdaptFormer': 'LoRand', 'LoRand': 'Houlsby'}


@pytest.fixture(params=sorted(BACKBONES))
def build(request):
    return BACKBONES[request.param]


def perturbed(model, seed=3):
    """Adapters moved away from their (often zero) init, dropout off."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name in model.adapter_state_keys():
            param = model.get_parameter(name)
            param.add_(torch.randn_like(param) * 0.1)
    return no_dropout(model).eval()


def small_images():
    return images(32, 32, batch=1)  # the smallest input both take


def forward(model, x):
    with torch.no_grad():
        return model(x)


def frozen_tensors(model):
    adapter = set(model.adapter_state_keys())
    return {k: v.clone() for k, v in model.state_dict().items()
            if k not in adapter}


def assert_tensors_identical(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize('method', METHODS)
def test_set_loaded_by_name_is_the_single_set_model(build, method):
    single = perturbed(build(adapter=TINY_ADAPTERS[method]))
    x = small_images()
    expected = forward(single, x)
    # a backbone running another method, holding the same frozen weights
    shared = perturbed(build(adapter=TINY_ADAPTERS[OTHER[method]]), seed=5)
    adapter = set(single.adapter_state_keys())
    shared.load_state_dict({k: v for k, v in single.state_dict().items()
                            if k not in adapter}, strict=False)
    other_out = forward(shared, x)
    frozen = frozen_tensors(shared)

    added = shared.add_adapter_set('task', TINY_ADAPTERS[method])
    added.load_state_dict({k: single.state_dict()[k] for k in adapter})
    assert shared.adapter_set_names() == ['default', 'task']
    for _ in range(2):  # back and forth
        shared.activate_adapter_set('task')
        assert shared.active_adapter_set == 'task'
        assert list(shared.state_dict()) == list(single.state_dict())
        assert_outputs_equal(forward(shared, x), expected)
        shared.activate_adapter_set('default')
        assert_outputs_equal(forward(shared, x), other_out)
    assert_tensors_identical(frozen_tensors(shared), frozen)


@pytest.mark.parametrize('method', ['Mona', 'LoRA'])
def test_single_set_keys_unchanged_and_sets_stay_out_of_the_tree(build,
                                                                method):
    model = build(adapter=TINY_ADAPTERS[method])
    keys = list(model.state_dict())
    names = [n for n, _ in model.named_parameters()]
    other = model.add_adapter_set('other', TINY_ADAPTERS[OTHER[method]])
    assert list(model.state_dict()) == keys
    assert [n for n, _ in model.named_parameters()] == names
    in_tree = {id(p) for p in model.parameters()}
    assert not in_tree & {id(p) for p in other.parameters()}
    model.activate_adapter_set('other')
    assert set(other.state_dict()) == set(model.adapter_state_keys())
    model.activate_adapter_set('default')
    assert list(model.state_dict()) == keys


def test_no_set_active_is_the_frozen_base(build):
    plain = no_dropout(build()).eval()
    model = no_dropout(build(adapter=TINY_ADAPTERS['Mona'], tuning='fixed'))
    model.load_state_dict(plain.state_dict(), strict=False)
    model.add_adapter_set('lora', TINY_ADAPTERS['LoRA'], activate=True)
    model.delete_adapter_set('default')
    model.activate_adapter_set(None)
    assert model.adapter_set_names() == ['lora']
    x = small_images()
    assert_outputs_equal(forward(model.eval(), x), forward(plain, x))
    assert list(model.state_dict()) == list(plain.state_dict())


def test_sets_added_to_a_backbone_without_adapters(build):
    model = perturbed(build(tuning='fixed'))
    model.add_adapter_set('a', TINY_ADAPTERS['Mona'], activate=True)
    reference = perturbed(build(adapter=TINY_ADAPTERS['Mona']))
    reference.load_state_dict(model.state_dict())
    x = small_images()
    assert_outputs_equal(forward(model, x), forward(reference, x))
    assert not any(p.requires_grad for p in model.parameters())


def test_lora_merge_acts_on_the_active_set_and_must_be_undone_to_switch(
        build):
    model = perturbed(build(adapter=TINY_ADAPTERS['LoRA']))
    lora_b = dict(type='LoRA', rank=2, targets=('v', 'fc2'))
    model.add_adapter_set('b', lora_b)
    x = small_images()
    unmerged = forward(model, x)
    assert model.merge_lora() > 0
    assert_outputs_equal(forward(model, x), unmerged, atol=1e-5)
    for action in (lambda: model.activate_adapter_set('b'),
                   lambda: model.delete_adapter_set('default')):
        with pytest.raises(AdapterSetError, match=r"merged into the frozen "
                           r"weights.*unmerge_lora\(\) first"):
            action()
    assert model.active_adapter_set == 'default'
    model.unmerge_lora()
    model.activate_adapter_set('b')
    assert model.merge_lora() == len([
        m for m in model.modules() if type(m).__name__ == 'LoRALinear'])
    model.unmerge_lora()


def test_training_one_set_leaves_the_others_and_the_frozen_weights(build):
    model = build(adapter=TINY_ADAPTERS['Mona'])
    other = model.add_adapter_set('lora', TINY_ADAPTERS['LoRA'])
    other_before = copy.deepcopy(other.state_dict())
    frozen = frozen_tensors(model)
    default_before = {k: v.clone() for k, v in
                      model.adapter_sets['default'].state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {
        id(p) for p in model.adapter_sets['default'].parameters()}
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    model.train()
    for _ in range(2):
        loss = sum(out.square().mean() for out in model(small_images()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = model.adapter_sets['default'].state_dict()
    assert any(not torch.equal(changed[k], v)
               for k, v in default_before.items())
    assert_tensors_identical(other.state_dict(), other_before)
    assert_tensors_identical(frozen_tensors(model), frozen)
    assert all(p.grad is None for p in other.parameters())


def test_device_dtype_and_mode_reach_the_inactive_sets(build):
    model = build(adapter=TINY_ADAPTERS['Mona'])
    other = model.add_adapter_set('lora', TINY_ADAPTERS['LoRA'])
    model.double().eval()
    assert all(p.dtype == torch.float64 for p in other.parameters())
    model.activate_adapter_set('lora')
    assert not any(m.training for m in model.modules())
    out = forward(model, small_images().double())
    assert out[0].dtype == torch.float64
    model.train()
    model.activate_adapter_set('default')
    model.activate_adapter_set('lora')
    assert all(m.training for m in model.modules())


def test_refusals_name_the_problem_and_change_nothing(build):
    model = build(adapter=TINY_ADAPTERS['Mona'])
    model.add_adapter_set('seg', TINY_ADAPTERS['LoRA'])
    keys = list(model.state_dict())
    with pytest.raises(AdapterSetError, match=r"already holds an adapter set "
                       r"named 'seg' \(loaded: \['default', 'seg'\]\)"):
        model.add_adapter_set('seg', TINY_ADAPTERS['Houlsby'])
    with pytest.raises(AdapterSetError, match=r"no adapter set named 'det'; "
                       r"loaded sets: \['default', 'seg'\]"):
        model.activate_adapter_set('det')
    with pytest.raises(AdapterSetError, match="no adapter set named 'det'"):
        model.delete_adapter_set('det')
    with pytest.raises(ValueError, match='Unknown adapter type'):
        model.add_adapter_set('bad', dict(type='Nope'))
    assert model.adapter_set_names() == ['default', 'seg']
    assert model.active_adapter_set == 'default'
    assert list(model.state_dict()) == keys

    full = build(adapter=TINY_ADAPTERS['Mona'], tuning='full')
    with pytest.raises(AdapterSetError, match=r"tuning='full' trains backbone "
                       r"weights that all adapter sets share"):
        full.add_adapter_set('b', TINY_ADAPTERS['LoRA'])


def test_tensors_of_another_backbone_shape_are_refused():
    narrow = tiny_swin(adapter=TINY_ADAPTERS['Mona'])
    wide = tiny_swin(adapter=TINY_ADAPTERS['Mona'], embed_dims=48)
    state = {k: wide.state_dict()[k] for k in wide.adapter_state_keys()}
    target = narrow.add_adapter_set('wide', TINY_ADAPTERS['Mona'])
    before = copy.deepcopy(target.state_dict())
    with pytest.raises(AdapterSetError, match=r"adapter set 'wide' \(Mona\) "
                       r"do not fit this backbone: other shapes"):
        target.load_state_dict(state)
    assert_tensors_identical(target.state_dict(), before)
