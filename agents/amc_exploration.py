"""AMC's exploration for the ddpg and td3 agents (He et al. 2018): a truncated-normal noise around the actor's keep
ratio, decayed per episode, and SB3's DDPG and TD3 drawing from it instead of adding clipped noise. Used by
:mod:`ddc_env.agents.sb3`."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy.stats import truncnorm
from stable_baselines3 import DDPG, TD3
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from ddc_env.validate import check_number

__all__ = ["AMCDDPG", "AMCTD3", "TruncatedNormalNoise"]


class TruncatedNormalNoise(ActionNoise):
    """AMC's exploration noise: each action drawn from a normal around the policy's action with standard deviation
    ``sigma``, truncated to the action range, and ``sigma`` multiplied by ``decay`` per finished episode that used
    it (warm-up episodes, played with uniform random actions, do not count, as in AMC).

    Truncated, not clipped: SB3's action noise is additive (``clip(action + noise(), -1, 1)`` in its scaled
    space), so every draw past a bound lands *on* the bound, a keep ratio of exactly 0 (remove) or 1 (full width)
    far more often than a truncated normal would give it. A truncated normal needs the action it is centred on,
    which SB3's ``noise()`` does not receive: :meth:`perturb` takes it, the ddpg and td3 agents call it instead of
    SB3's addition, and calling the noise SB3's way raises a TypeError. ``sigma`` is in the action's units (AMC's
    delta on a keep ratio in [0, 1]). The random generator (``seed``) and sigma are pickled with the model, so a
    resumed run continues both.
    """

    def __init__(self, sigma: float, decay: float, seed: int | None = None) -> None:
        super().__init__()
        self.sigma = check_number(sigma, "noise_sigma", minimum=0.0)
        self.decay = check_number(decay, "noise_decay", minimum=0.0, maximum=1.0, exclusive_minimum=True)
        self._rng = np.random.default_rng(seed)
        self._drawn: set[int] = set()  # envs (rows of the action) drawn for since their episode began

    def perturb(self, action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """A draw from the normal around each entry of ``action`` (one row per env), truncated to [low, high]."""
        action = np.asarray(action, dtype=np.float64)
        self._drawn.update(range(len(action)))
        if self.sigma == 0:
            return action.copy()
        draw = truncnorm.rvs((low - action) / self.sigma, (high - action) / self.sigma, loc=action, scale=self.sigma,
                             random_state=self._rng)
        return np.clip(draw, low, high)  # the draw is within the bounds but for float rounding

    def reset(self, indices: Iterable[int] | None = None) -> None:
        """Episodes ended (SB3 calls this; ``indices``: the envs whose episode ended, None: all): sigma decays once
        per ended episode the noise drew for."""
        ended = self._drawn if indices is None else self._drawn & set(indices)
        self.sigma *= self.decay ** len(ended)
        self._drawn -= ended

    def discard_episodes(self) -> None:
        """Forget the episodes in flight: they end without an evaluation (training starts again from a reset)."""
        self._drawn.clear()

    def __call__(self) -> np.ndarray:
        raise TypeError("TruncatedNormalNoise draws around the action: call perturb(action, low, high) (SB3's additive "
                        "action noise would be clipped, not truncated)")

    def __repr__(self) -> str:
        return f"TruncatedNormalNoise(sigma={self.sigma:g}, decay={self.decay:g})"


class _TruncatedExploration(OffPolicyAlgorithm):
    """DDPG / TD3 exploring as AMC does: uniform random actions during the warm-up, then the actor's action
    perturbed by a :class:`TruncatedNormalNoise` (one for all envs: SB3 would copy it per env, generator
    included, and the copies would draw the same numbers)."""

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        noise = self.action_noise
        if isinstance(noise, TruncatedNormalNoise):
            noise.discard_episodes()  # learn() resets the envs: episodes in flight are not finished
        result = super()._setup_learn(*args, **kwargs)
        if isinstance(noise, TruncatedNormalNoise):
            self.action_noise = noise
        return result

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1
                       ) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(action_noise, TruncatedNormalNoise):
            return super()._sample_action(learning_starts, action_noise, n_envs)
        action, buffer_action = super()._sample_action(learning_starts, None, n_envs)
        if self.num_timesteps < learning_starts:  # AMC's warm-up: uniform random actions, no noise
            return action, buffer_action
        action = action_noise.perturb(action, self.action_space.low, self.action_space.high).astype(action.dtype)
        self.logger.record("rollout/noise_sigma", action_noise.sigma)
        return action, self.policy.scale_action(action)


class AMCDDPG(_TruncatedExploration, DDPG):
    """SB3's DDPG with AMC's exploration (:class:`TruncatedNormalNoise`)."""


class AMCTD3(_TruncatedExploration, TD3):
    """SB3's TD3 with AMC's exploration (:class:`TruncatedNormalNoise`)."""
