"""The pieces of an exact --resume, without a Runner: skipping the batches
already trained on leaves the random states and the batches that follow as
the uninterrupted run has them; validation does not draw from them."""
from types import SimpleNamespace

import numpy as np
import torch
from mmengine.dataset import InfiniteSampler
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import DataLoader, Dataset

from mmadapter.engine import RandomStateHook
from mmadapter.engine.resume import (
    SkipAheadIterator,
    random_states,
    set_random_states,
)


class RandomlyAugmented(Dataset):
    """Each sample draws from the global generators, as a flip would."""

    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.tensor([i, np.random.randint(1000)])


def same_numpy_state(a, b) -> bool:
    return np.array_equal(a[1], b[1]) and a[2] == b[2]


def loader_iterator():
    loader = DataLoader(RandomlyAugmented(), batch_size=2, num_workers=0,
                        sampler=InfiniteSampler(RandomlyAugmented(), seed=3))
    return _InfiniteDataloaderIterator(loader)


def test_skipping_leaves_the_states_and_the_next_batches_unchanged():
    np.random.seed(0)
    uninterrupted = loader_iterator()
    for _ in range(4):
        next(uninterrupted)
    state = random_states()  # saved in the checkpoint after 4 batches
    expected = [next(uninterrupted) for _ in range(3)]

    np.random.seed(0)
    resumed = loader_iterator()
    set_random_states(state)  # RandomStateHook after loading
    plain = loader_iterator()
    for _ in range(4):
        next(plain)  # mmengine's advance: transforms, draws
    assert not same_numpy_state(np.random.get_state(), state['numpy'])

    set_random_states(state)
    skipping = SkipAheadIterator(resumed, skip=4)
    assert all(next(skipping) is None for _ in range(4))
    assert same_numpy_state(np.random.get_state(), state['numpy'])
    got = [next(skipping) for _ in range(3)]
    for a, b in zip(got, expected):
        assert torch.equal(a, b)


def test_validation_does_not_draw_from_the_training_states():
    hook = RandomStateHook()
    runner = SimpleNamespace(hooks=[], train_loop=SimpleNamespace(iter=0))
    hook.before_train(runner)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    hook.before_val(runner)
    torch.rand(10)  # e.g. the validation loader's seed
    np.random.rand()
    hook.after_val(runner)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_resumed_run_without_a_fixed_seed_takes_the_checkpoints(tmp_path):
    """mmengine builds the sampler (which draws its shuffling seed) before
    it resumes: without the interrupted run's seed, a resumed run of a
    config with no fixed seed would go on with another data order."""
    from mmengine.config import Config

    from mmadapter.cli.runner_setup import keep_resumed_seed
    path = str(tmp_path / 'iter_2.pth')
    torch.save(dict(meta=dict(seed=1234, iter=2), state_dict={}), path)
    cfg = Config(dict(resume=True, load_from=path, work_dir=str(tmp_path)))
    keep_resumed_seed(cfg)
    assert cfg.randomness.seed == 1234
    # --resume alone: the work directory's last checkpoint
    (tmp_path / 'last_checkpoint').write_text(path)
    cfg = Config(dict(resume=True, load_from=None, work_dir=str(tmp_path),
                      randomness=dict(deterministic=True)))
    keep_resumed_seed(cfg)
    assert cfg.randomness == dict(deterministic=True, seed=1234)
    # a seed the config fixes, or no resume: left as it is
    fixed = Config(dict(resume=True, load_from=path, randomness=dict(seed=7),
                        work_dir=str(tmp_path)))
    keep_resumed_seed(fixed)
    assert fixed.randomness.seed == 7
    fresh = Config(dict(resume=False, load_from=path, work_dir=str(tmp_path)))
    keep_resumed_seed(fresh)
    assert 'randomness' not in fresh
