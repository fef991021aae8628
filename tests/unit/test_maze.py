"""The T-maze environment (memlib.tasks.maze): dynamics, rewards, seeding, shapes and errors."""

import pytest
import torch

from memlib.tasks.maze import (
    CORRIDOR,
    CUE_LEFT,
    CUE_RIGHT,
    FORWARD,
    JUNCTION,
    LEFT,
    OBSERVATION_SIZE,
    RIGHT,
    TMaze,
)


def run(env: TMaze, junction_action, seed=0, episode=0):
    """Walk forward to the junction, then take ``junction_action(cue)``; return observations and steps."""
    observations, steps = [env.reset(seed, episode)], []
    for _ in range(env.length):
        step = env.step(torch.full((env.batch_size,), FORWARD))
        steps.append(step)
        observations.append(step.observation)
    steps.append(env.step(junction_action(env.cue)))
    return observations, steps


@pytest.mark.parametrize("length", [1, 2, 5, 13])
def test_episode_lasts_length_plus_one_and_ends_at_the_junction(length):
    env = TMaze(length, 6)
    observations, steps = run(env, lambda cue: cue + 1)
    assert len(steps) == length + 1 == env.episode_length
    assert not any(s.done.any() for s in steps[:-1])
    assert steps[-1].done.all()
    assert all(obs.shape == (6, OBSERVATION_SIZE) for obs in observations)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(torch.zeros(6, dtype=torch.long))


@pytest.mark.parametrize("length", [1, 4, 10])
def test_cue_only_at_step_zero_and_junction_only_at_the_end(length):
    env = TMaze(length, 64)
    observations, _ = run(env, lambda cue: cue + 1)
    first = observations[0]
    cue = env.cue
    assert torch.equal(first[:, CUE_LEFT], (cue == 0).float())
    assert torch.equal(first[:, CUE_RIGHT], (cue == 1).float())
    for t, obs in enumerate(observations):
        if t > 0:
            assert obs[:, [CUE_LEFT, CUE_RIGHT]].abs().sum() == 0, t
        at_junction = t == length
        assert torch.all(obs[:, JUNCTION] == float(at_junction)), t
        assert torch.all(obs[:, CORRIDOR] == float(not at_junction)), t
    # every observation after the first is the same for both cues: a memoryless agent cannot tell
    assert torch.equal(observations[-1][cue == 0][0], observations[-1][cue == 1][0])


def test_reward_at_the_junction_follows_the_cue():
    env = TMaze(3, 200, reward=1.0, wrong_reward=-1.0, step_penalty=0.05)
    _, steps = run(env, lambda cue: cue + 1)  # the cued turn
    for step in steps[:-1]:
        torch.testing.assert_close(step.reward, torch.full((200,), -0.05))
        assert not step.success.any()
    assert steps[-1].success.all() and torch.all(steps[-1].reward == 1.0)

    _, steps = run(env, lambda cue: 2 - cue)  # the other turn
    assert not steps[-1].success.any() and torch.all(steps[-1].reward == -1.0)

    _, steps = run(env, lambda cue: torch.full_like(cue, FORWARD))  # into the wall
    assert not steps[-1].success.any() and torch.all(steps[-1].reward == -1.0)

    _, steps = run(env, lambda cue: torch.full_like(cue, LEFT))  # always left: right half the time
    assert torch.equal(steps[-1].success, env.cue == 0)
    _, steps = run(env, lambda cue: torch.full_like(cue, RIGHT))
    assert torch.equal(steps[-1].success, env.cue == 1)


def test_corridor_actions_do_not_change_the_walk():
    env = TMaze(4, 8)
    env.reset(0, 0)
    for t in range(1, 5):
        step = env.step(torch.tensor([FORWARD, LEFT, RIGHT, LEFT, FORWARD, RIGHT, RIGHT, LEFT]))
        assert torch.all(step.observation[:, JUNCTION] == float(t == 4))


def test_seeding():
    a, b = TMaze(5, 500), TMaze(5, 500)
    assert torch.equal(a.reset(seed=3, episode=7), b.reset(seed=3, episode=7))
    assert torch.equal(a.cue, b.cue)
    b.reset(seed=3, episode=8)
    assert not torch.equal(a.cue, b.cue)
    b.reset(seed=4, episode=7)
    assert not torch.equal(a.cue, b.cue)
    share_left = (a.cue == 0).float().mean().item()
    assert 0.4 < share_left < 0.6, share_left


def test_batched_shapes_and_dtypes():
    env = TMaze(2, 5)
    obs = env.reset()
    assert obs.shape == (5, 4) and obs.dtype == torch.float32
    step = env.step(torch.zeros(5, dtype=torch.long))
    assert step.observation.shape == (5, 4)
    assert step.reward.shape == (5,) and step.reward.dtype == torch.float32
    assert step.done.shape == (5,) and step.done.dtype == torch.bool
    assert step.success.shape == (5,) and step.success.dtype == torch.bool


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"length": 0, "batch_size": 4}, ValueError, "length >= 1, got length=0"),
        ({"length": -3, "batch_size": 4}, ValueError, "length >= 1"),
        ({"length": 3, "batch_size": 0}, ValueError, "batch_size >= 1"),
        ({"length": 2.5, "batch_size": 4}, TypeError, "length to be an int"),
        ({"length": 3, "batch_size": 4, "step_penalty": -0.1}, ValueError, "step_penalty >= 0"),
        ({"length": 3, "batch_size": 4, "wrong_reward": 2.0}, ValueError, "wrong_reward < reward"),
    ],
)
def test_constructor_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        TMaze(**kwargs)


def test_step_errors():
    env = TMaze(2, 3)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(torch.zeros(3, dtype=torch.long))
    env.reset()
    with pytest.raises(ValueError, match=r"shape \(3,\), got \(4,\)"):
        env.step(torch.zeros(4, dtype=torch.long))
    with pytest.raises(TypeError, match="integer actions"):
        env.step(torch.zeros(3))
    with pytest.raises(ValueError, match="actions in 0..2"):
        env.step(torch.tensor([0, 3, 1]))
