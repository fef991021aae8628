"""The T-maze: a reinforcement-learning task that needs memory (Bakker 2002, "Reinforcement Learning
with Long Short-Term Memory", NIPS 14: the T-maze experiment).

The agent starts at the foot of a corridor of ``length`` cells and walks to a junction, where it must
turn left or right. A cue at the start says which way is rewarded, and the agent sees it only there:
at the junction every episode looks the same, so an agent without memory turns the right way half of
the time. One batch runs ``B`` mazes side by side, each with its own cue.

Shapes: ``B`` batch. Observations are (B, 4) float vectors ``[cue_left, cue_right, corridor,
junction]``; actions are (B,) integers ``FORWARD`` (0), ``LEFT`` (1), ``RIGHT`` (2).

Dynamics (every episode lasts exactly ``length + 1`` steps, so a batch stays in step):

- step 0: the agent is at the start; it sees ``[cue_left, cue_right, 1, 0]``, the cue one-hot;
- steps 1 .. length - 1: it sees ``[0, 0, 1, 0]`` (the corridor);
- step ``length``: it sees ``[0, 0, 0, 1]`` (the junction).

In the corridor the walls leave one way to go: whatever the action, the agent moves one cell on and
pays ``step_penalty``. (Bakker's agent chooses its moves along the corridor too; we drop that, so that
reaching the junction is no exploration problem and the task tests memory alone.) At the junction
the episode ends: the turn the cue asked for earns ``reward`` (+1), the other turn, or walking into
the wall ahead, earns ``wrong_reward`` (-1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from memlib.tasks.seeding import batch_generator
from memlib.validate import check_float, check_int

FORWARD, LEFT, RIGHT = 0, 1, 2
OBSERVATION_SIZE, ACTIONS = 4, 3
CUE_LEFT, CUE_RIGHT, CORRIDOR, JUNCTION = range(OBSERVATION_SIZE)  # observation features


class TMazeStep(NamedTuple):
    """What :meth:`TMaze.step` returns.

    >>> TMazeStep._fields
    ('observation', 'reward', 'done', 'success')
    """
    observation: torch.Tensor  # (B, 4): what the agent sees next (zeros once the episode is over)
    reward: torch.Tensor  # (B,) float
    done: torch.Tensor  # (B,) bool: True on the junction step, for every maze of the batch
    success: torch.Tensor  # (B,) bool: turned the way the cue said (False before the junction)


class TMaze:
    """A batch of ``batch_size`` T-mazes with a corridor of ``length`` cells (see the module docstring).

    ``reset(seed, episode) -> observation (B, 4)`` draws the cues (0 left, 1 right, each with
    probability 1/2) from ``(seed, episode)`` alone, so episode ``k`` of a run is the same on every
    device; ``step(action (B,)) -> TMazeStep``. Like a gym environment, the maze keeps its place
    (``t``, ``cue``) between calls.

    >>> maze = TMaze(length=3, batch_size=2)
    >>> maze.reset(seed=0).shape
    torch.Size([2, 4])
    """

    def __init__(
        self,
        length: int,
        batch_size: int,
        *,
        reward: float = 1.0,
        wrong_reward: float = -1.0,
        step_penalty: float = 0.01,
        device: torch.device | str = "cpu",
    ):
        for name, value in (("length", length), ("batch_size", batch_size)):
            check_int("TMaze", name, value, expected=f"{name} to be an int", got=type(value).__name__,
                      error=TypeError)
            check_int("TMaze", name, value, low=1, expected=f"{name} >= 1", got=f"{name}={value}")
        check_float("TMaze", "step_penalty", step_penalty, low=0, expected="step_penalty >= 0", got=str(step_penalty))
        if not wrong_reward < reward:
            raise ValueError(f"TMaze: expected wrong_reward < reward, got {wrong_reward} and {reward}")
        self.length, self.batch_size = length, batch_size
        self.reward, self.wrong_reward, self.step_penalty = reward, wrong_reward, step_penalty
        self.device = torch.device(device)
        self.t: int | None = None  # the step about to be taken; None before reset and after the end
        self.cue: torch.Tensor | None = None  # (B,) int64: 0 left, 1 right

    @property
    def episode_length(self) -> int:
        return self.length + 1

    def _observation(self, t: int) -> torch.Tensor:
        obs = torch.zeros(self.batch_size, OBSERVATION_SIZE, device=self.device)  # (B, 4)
        if t == 0:
            obs[torch.arange(self.batch_size, device=self.device), self.cue] = 1.0  # cue one-hot
        obs[:, JUNCTION if t == self.length else CORRIDOR] = 1.0
        return obs

    def reset(self, seed: int = 0, episode: int = 0) -> torch.Tensor:
        """Start a new batch of episodes; returns the first observation (B, 4), the cue in view."""
        gen = batch_generator(seed, episode)
        self.cue = torch.randint(0, 2, (self.batch_size,), generator=gen).to(self.device)
        self.t = 0
        return self._observation(0)

    def step(self, action: torch.Tensor) -> TMazeStep:
        """Take one action per maze: (B,) integers in {FORWARD, LEFT, RIGHT}."""
        if self.t is None:
            raise RuntimeError("TMaze.step: no episode is running; call reset() first")
        if not isinstance(action, torch.Tensor) or action.shape != (self.batch_size,):
            got = tuple(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__
            raise ValueError(f"TMaze.step: expected action of shape ({self.batch_size},), got {got}")
        if action.dtype.is_floating_point or action.dtype == torch.bool:
            raise TypeError(f"TMaze.step: expected integer actions, got {action.dtype}")
        if ((action < 0) | (action >= ACTIONS)).any():
            raise ValueError(f"TMaze.step: expected actions in 0..{ACTIONS - 1}, got {action.tolist()}")
        action = action.to(self.device)
        B = self.batch_size
        if self.t < self.length:  # corridor: move one cell on, pay the step penalty
            self.t += 1
            reward = torch.full((B,), -self.step_penalty, device=self.device)
            false = torch.zeros(B, dtype=torch.bool, device=self.device)
            return TMazeStep(self._observation(self.t), reward, false, false)
        # junction: LEFT (1) is right for cue 0, RIGHT (2) for cue 1
        success = action == self.cue + 1
        reward = torch.where(success, self.reward, self.wrong_reward).to(torch.float32)
        self.t = None
        done = torch.ones(B, dtype=torch.bool, device=self.device)
        return TMazeStep(torch.zeros(B, OBSERVATION_SIZE, device=self.device), reward, done, success)
