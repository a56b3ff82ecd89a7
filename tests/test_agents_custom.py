"""Tests of the custom recurrent controllers: agents.reinforce (N2N, both schedules), agents.actor_critic and
agents.encoder_decoder.

- end to end on a smoke-fidelity LeNet-5 env with real KD students: checkpoint after every iteration, and a
  resumed run continues exactly where an uninterrupted one would be (same rewards, same weights, every
  re-requested student a cache hit);
- learning where the optimum is known: a cheap analytic reward of the params ratio, its optimum found by
  enumerating every student the env allows; each agent gets within a margin of it and beats random search;
- policy transfer: a controller trained on LeNet-5 (4 decisions) loads on VGG-11 (9 decisions) and fine-tunes.

Controllers are tiny, so these tests run torch on one thread (faster than two on 2 shared CPU cores).
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.agents import AGENTS
from ddc_env.agents.common import load_checkpoint, make_hyperparams
from ddc_env.lab.runs import SearchLog
from ddc_env.agents.controllers import (EncoderDecoder, RecurrentActorCritic, RemovalPolicy, ShrinkPolicy,
                                        sample_masked, seeded)
from ddc_env.agents.random_search import random_search
from ddc_env.arch import REMOVE, apply_decisions, build
from ddc_env.models import vgg11
from ddc_env.models.checkpoints import TeacherCheckpoint

# no training, no BN recalibration, 32 val images: about 5 ms per LeNet-5 student
ZERO = {"name": "zero", "val_samples": 32, "train_samples": 32, "recalibrate_bn": 0}
LENET_ROUNDING = {"channel_round": 2, "min_channels": 2}  # the DDC-LeNet5-MNIST preset's


@dataclass(frozen=True)
class ParamTarget:
    """Reward ``-|param_ratio - target|``: the best student has exactly ``target`` of the teacher's params."""

    target: float

    def __call__(self, record: dict[str, Any]) -> float:
        return -abs(record["param_ratio"] - self.target) if record["status"] == "ok" else -1.0


class RecordingLog(SearchLog):
    """A SearchLog that also keeps every episode's reward and info."""

    def __init__(self, run_dir: Path | None, total: int) -> None:
        super().__init__(run_dir, total, progress=False)
        self.rewards: list[float] = []
        self.infos: list[dict[str, Any]] = []

    def record(self, reward: float, info: dict[str, Any]) -> None:
        super().record(reward, info)
        self.rewards.append(reward)
        self.infos.append(info)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lenet_env(teacher: TeacherCheckpoint, data_dir: Path, **kwargs: Any) -> gym.Env:
    return gym.make("DDC-LeNet5-MNIST", teacher=str(teacher.path), dataset="synth", data_dir=str(data_dir),
                    latency="flops", device="cpu", **kwargs)


def controller_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["controller"]


# -- end to end, checkpoint, resume -----------------------------------------------------------------------
SMOKE_CASES = [
    pytest.param("reinforce", "two_stage", {"schedule": "two_stage", "removal_iterations": 2}, id="reinforce-2stage"),
    pytest.param("reinforce", "two_stage", {"schedule": "joint"}, id="reinforce-joint"),
    pytest.param("actor_critic", "two_stage", {}, id="actor_critic-2stage-env"),
    pytest.param("actor_critic", "joint", {}, id="actor_critic-joint-env"),
    pytest.param("encoder_decoder", "two_stage", {}, id="encoder_decoder-2stage-env"),
    pytest.param("encoder_decoder", "joint", {}, id="encoder_decoder-joint-env"),
]


@pytest.mark.parametrize("agent, stages, hyperparams", SMOKE_CASES)
def test_agent_runs_checkpoints_and_resumes(agent, stages, hyperparams, synth_teacher, synth_dir, tmp_path):
    """4 episodes (2 iterations) with real KD students, then a resume to 8; an uninterrupted 8-episode run
    gives the same rewards and weights, and re-requests only students already in the results store."""
    module = importlib.import_module(f"agents.{agent}")
    env_fn = functools.partial(lenet_env, synth_teacher, synth_dir, fidelity="smoke", reward="n2n", stages=stages,
                               store=str(tmp_path / "results.sqlite"), **LENET_ROUNDING)
    hp = {"rollouts": 2, **hyperparams}
    ckpt = tmp_path / "agent.pt"

    first = RecordingLog(tmp_path / "run", 4)
    module.run(env_fn, episodes=4, log=first, seed=3, checkpoint=ckpt, **hp)
    first.close()
    assert first.episodes == 4 and all(info["status"] == "ok" for info in first.infos)
    assert (tmp_path / "run" / "best.json").exists() and any((tmp_path / "run" / "tensorboard").iterdir())
    state = load_checkpoint(ckpt)
    assert (state["agent"], state["episodes"]) == (agent, 4)
    assert state["iteration"] == 2

    resumed = RecordingLog(None, 8)  # a fresh log: the episode count comes back from the checkpoint
    module.run(env_fn, episodes=8, log=resumed, seed=3, checkpoint=ckpt, resume=True, **hp)
    assert resumed.episodes == 8 and len(resumed.rewards) == 4
    assert load_checkpoint(ckpt)["episodes"] == 8

    straight = RecordingLog(None, 8)
    module.run(env_fn, episodes=8, log=straight, seed=3, checkpoint=tmp_path / "straight.pt", **hp)
    assert straight.rewards == first.rewards + resumed.rewards
    assert all(info["cache_hit"] for info in straight.infos)
    resumed_weights, straight_weights = controller_of(ckpt), controller_of(tmp_path / "straight.pt")
    assert all(torch.equal(resumed_weights[k], straight_weights[k]) for k in straight_weights)


@pytest.mark.parametrize("agent", ["reinforce", "actor_critic", "encoder_decoder"])
def test_every_hyperparameter_is_checked_at_construction(agent):
    """Every field of an agent's ``Hyperparams`` refuses a value of the wrong type, NaN, infinity or a value out of
    range with a one-line ValueError naming the field (an lr of NaN used to make every update NaN silently)."""
    cls = importlib.import_module(AGENTS[agent].module).Hyperparams
    defaults = cls()
    for f in dataclasses.fields(cls):
        default = getattr(defaults, f.name)
        bad: list[Any] = ["x", True, [1]]
        if isinstance(default, float):
            bad += [math.nan, math.inf, -1.0]
        elif isinstance(default, int) or f.name == "removal_iterations":
            bad += [1.5, -1, math.nan]
        for value in bad:
            with pytest.raises(ValueError, match=f"{f.name}.*{value!r}" if isinstance(value, str) else f.name):
                make_hyperparams(cls, {f.name: value})


@pytest.mark.parametrize("agent", ["reinforce", "actor_critic"])
def test_concurrent_play_gives_the_sequential_episodes(agent, synth_teacher, synth_dir):
    """play_episodes' concurrent path (each episode played to its last step, its student prefetched, then all
    replayed in order) gives exactly the episodes of sequential play: same actions, students, rewards, hits."""
    from ddc_env.agents import actor_critic, reinforce
    from ddc_env.agents.common import layer_features, play_episodes

    timing = ("eval_seconds", "simulated_seconds", "train_seconds", "train_images_per_second")

    def episodes(concurrent: bool) -> list:
        env = lenet_env(synth_teacher, synth_dir, fidelity=ZERO, reward="n2n", width_choices=(1.0,),
                        **LENET_ROUNDING)  # removals only: few students, so a batch repeats some
        _, info = env.reset(seed=0)
        n_actions, generator = int(env.action_space.n), torch.Generator().manual_seed(0)
        if agent == "reinforce":
            net = seeded(0, lambda: reinforce.make_controller(n_actions, reinforce.Hyperparams()))
            logits, keep = net["removal"](layer_features(info["layer_table"])), env.unwrapped.action_of(1.0)
            play = functools.partial(reinforce.rollout, shrink=net["shrink"], removal_logits=logits, stage="joint",
                                     frozen=None, keep=keep, generator=generator)
        else:
            net = seeded(0, lambda: actor_critic.make_controller(n_actions, actor_critic.Hyperparams()))
            play = functools.partial(actor_critic.rollout, net=net, generator=generator)
        played = play_episodes(env, 8, play, concurrent=concurrent)
        env.close()
        return [(ep.reward, {k: v for k, v in ep.info.items() if k not in timing},
                 torch.as_tensor(ep.log_prob if agent == "reinforce" else ep.log_probs).tolist()) for ep in played]

    sequential, concurrent = episodes(False), episodes(True)
    assert sequential == concurrent
    assert any(info["cache_hit"] for _, info, _ in sequential)  # repeats in the batch are hits in both


def test_bad_arguments_are_clear_errors(synth_teacher, synth_dir, tmp_path):
    from ddc_env.agents import actor_critic, encoder_decoder, reinforce

    env_fn = functools.partial(lenet_env, synth_teacher, synth_dir, fidelity=ZERO, reward=ParamTarget(0.5),
                               **LENET_ROUNDING)
    log = SearchLog(None, 5, progress=False)
    for module in (reinforce, actor_critic, encoder_decoder):
        with pytest.raises(ValueError, match="unknown hyperparameter.*learning_rate.*allowed.*rollouts"):
            module.run(env_fn, episodes=5, log=log, learning_rate=0.1)
    with pytest.raises(ValueError, match="schedule"):
        reinforce.run(env_fn, episodes=5, log=log, schedule="alternating")
    with pytest.raises(ValueError, match="stages='two_stage'"):
        reinforce.run(functools.partial(env_fn, stages="joint"), episodes=5, log=log)
    with pytest.raises(ValueError, match="Discrete"):
        actor_critic.run(functools.partial(env_fn, action_mode="one_shot"), episodes=5, log=log)

    ckpt = tmp_path / "ac.pt"
    actor_critic.run(env_fn, episodes=2, log=log, checkpoint=ckpt, rollouts=2)
    with pytest.raises(ValueError, match="'actor_critic' checkpoint, not a 'encoder_decoder'"):
        encoder_decoder.run(env_fn, episodes=4, log=log, init_from=ckpt)
    with pytest.raises(ValueError, match="8 actions; this env has 17 and 15"):  # kernel_shrink doubles widths
        actor_critic.run(functools.partial(env_fn, kernel_shrink=True), episodes=4, log=log, init_from=ckpt)
    with pytest.raises(ValueError, match="hidden size"):
        actor_critic.run(env_fn, episodes=4, log=log, init_from=ckpt, hidden=16)


def test_masked_sampling_never_picks_a_forbidden_action():
    generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([5.0, -1.0, 0.0, 2.0])
    mask = np.array([False, True, False, True])
    actions = {sample_masked(logits, mask, generator)[0] for _ in range(200)}
    assert actions == {1, 3}
    action, log_prob, entropy = sample_masked(logits, np.array([False, False, True, False]), generator)
    assert (action, float(log_prob), float(entropy)) == (2, 0.0, 0.0)


def test_controllers_are_sized_by_features_and_actions_only():
    """The same weights run on layer tables of any length (no parameter depends on the number of layers)."""
    for n in (4, 9, 21):
        features = torch.rand(n, 17)
        assert RemovalPolicy()(features).shape == (n, 2)
        memory = EncoderDecoder(8).encode(features)
        assert memory.shape == (n, 64)
    obs = np.zeros(17, dtype=np.float32)
    assert ShrinkPolicy(8).step(obs, 3, None)[0].shape == (8,)
    assert RecurrentActorCritic(8).step(obs, None, None)[0].shape == (8,)
    shrink = ShrinkPolicy(8)
    assert all(p.requires_grad for p in shrink.parameters()) and len(list(shrink.parameters())) > 2


# -- learning where the optimum is known ------------------------------------------------------------------
def best_reward(teacher: TeacherCheckpoint, layer_table: list[dict[str, Any]], reward: ParamTarget,
                widths: tuple[float, ...]) -> float:
    """The best reward over every student the env allows, by enumeration (LeNet-5: 7 * 7 * 8 * 8 students)."""
    options = [[*([REMOVE] if row["removable"] else []), *(widths if row["shrinkable"] else (1.0,))]
               for row in layer_table]
    teacher_params = teacher.spec.params
    best = -math.inf
    for combo in itertools.product(*options):
        choices = {row["name"]: c for row, c in zip(layer_table, combo)}
        student = apply_decisions(teacher.spec, choices, **LENET_ROUNDING)
        best = max(best, reward({"status": "ok", "param_ratio": student.params / teacher_params}))
    return best


EPISODES, LAST = 300, 50
# Reward -|P/P_t - 0.5|, optimum ~0 (LeNet-5 with fc1 removed, conv1 at 0.25, conv2 at 0.9). Verified on seeds
# 0-9, 300 episodes each, worst seed: the mean reward of the last 50 episodes came within 0.080 (reinforce
# two-stage), 0.075 (reinforce joint), 0.098 (actor-critic), 0.077 and 0.068 (encoder-decoder on joint /
# two-stage envs) of the optimum (actor-critic on a two-stage env: 0.14, so it is not asserted here), while
# random search averaged -0.26 (two-stage env) and -0.19 (joint env); every agent's best student was within
# 0.013 of the optimum. Random search's best is as good (108 of the 3,136 students are within 0.01): what
# learning buys is a policy that keeps proposing near-optimal students, hence the comparison of means.
LEARNING_CASES = [
    pytest.param("reinforce", "two_stage", {"removal_iterations": 10}, id="reinforce-2stage"),
    pytest.param("reinforce", "two_stage", {"schedule": "joint"}, id="reinforce-joint"),
    pytest.param("actor_critic", "joint", {}, id="actor_critic"),
    pytest.param("encoder_decoder", "joint", {}, id="encoder_decoder-joint-env"),
    pytest.param("encoder_decoder", "two_stage", {}, id="encoder_decoder-2stage-env"),
]
MARGIN, BEST_MARGIN, BEAT_RANDOM_BY = 0.12, 0.015, 0.05


@pytest.fixture(scope="module")
def optimum(synth_teacher, synth_dir) -> float:
    env = lenet_env(synth_teacher, synth_dir, fidelity=ZERO, reward=ParamTarget(0.5), **LENET_ROUNDING)
    _, info = env.reset(seed=0)
    return best_reward(synth_teacher, info["layer_table"], ParamTarget(0.5), env.unwrapped.config.width_choices)


@pytest.fixture(scope="module")
def random_means(synth_teacher, synth_dir) -> dict[str, float]:
    """Random search's mean reward over the same number of episodes, per stage mode."""
    means = {}
    for stages in ("two_stage", "joint"):
        env = lenet_env(synth_teacher, synth_dir, fidelity=ZERO, reward=ParamTarget(0.5), stages=stages,
                        **LENET_ROUNDING)
        means[stages] = float(np.mean(random_search(env, EPISODES, seed=0, progress=False).rewards))
    return means


@pytest.mark.parametrize("agent, stages, hyperparams", LEARNING_CASES)
def test_agent_learns_towards_the_known_optimum(agent, stages, hyperparams, optimum, random_means, synth_teacher,
                                                synth_dir, tmp_path):
    module = importlib.import_module(f"agents.{agent}")
    env_fn = functools.partial(lenet_env, synth_teacher, synth_dir, fidelity=ZERO, reward=ParamTarget(0.5),
                               stages=stages, **LENET_ROUNDING)
    log = RecordingLog(None, EPISODES)
    module.run(env_fn, episodes=EPISODES, log=log, seed=0, checkpoint=tmp_path / "agent.pt", **hyperparams)
    last = float(np.mean(log.rewards[-LAST:]))
    assert optimum == pytest.approx(0.0, abs=1e-3)  # a student with half the params exists
    assert max(log.rewards) >= optimum - BEST_MARGIN
    assert last >= optimum - MARGIN, f"{agent}: mean of the last {LAST} episodes {last:.4f}, optimum {optimum:.4f}"
    assert last >= random_means[stages] + BEAT_RANDOM_BY, f"{agent}: {last:.4f} vs random {random_means[stages]:.4f}"
    # every parameter tensor was trained (the seed code trained only the shrink policy's output layer)
    initial = seeded(0, lambda: module.make_controller(8, module.Hyperparams(**hyperparams))).state_dict()
    trained = controller_of(tmp_path / "agent.pt")
    assert initial.keys() == trained.keys() and not any(torch.equal(initial[k], trained[k]) for k in initial)


# -- policy transfer across teachers of different depth ---------------------------------------------------
def vgg11_env(data_dir: Path, **kwargs: Any) -> gym.Env:
    """A random-weight VGG-11 teacher on the synthetic data (9 decisions), zero fidelity, tiny caps."""
    spec = vgg11(num_classes=4, in_channels=1, input_size=(28, 28))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = TeacherCheckpoint(build(spec).eval(), spec, {}, Path("random-weights"))
    return gym.make("DDC-VGG11-MNIST", teacher=teacher, dataset="synth", data_dir=str(data_dir), fidelity=ZERO,
                    latency="flops", device="cpu", max_train=64, max_val=32, reward="n2n", **kwargs)


@pytest.mark.parametrize("agent, lr_names", [("reinforce", ("removal_lr", "shrink_lr")), ("actor_critic", ("lr",)),
                                             ("encoder_decoder", ("lr",))])
def test_policy_transfers_from_lenet_to_vgg11(agent, lr_names, synth_teacher, synth_dir, tmp_path):
    """Train on LeNet-5 (4 decisions), fine-tune on VGG-11 (9 decisions) from those weights."""
    module = importlib.import_module(f"agents.{agent}")
    lenet_fn = functools.partial(lenet_env, synth_teacher, synth_dir, fidelity=ZERO, reward=ParamTarget(0.5),
                                 **LENET_ROUNDING)
    source = tmp_path / "lenet.pt"
    module.run(lenet_fn, episodes=10, log=SearchLog(None, 10, progress=False), seed=0, checkpoint=source)
    lenet_weights = controller_of(source)

    vgg_fn = functools.partial(vgg11_env, synth_dir)
    assert vgg_fn().reset()[1]["n_decisions"] == 9
    target = tmp_path / "vgg.pt"
    lr = 1e-3
    lrs = dict.fromkeys(lr_names, lr)
    log = RecordingLog(None, 3)
    module.run(vgg_fn, episodes=3, log=log, seed=1, checkpoint=target, init_from=source, rollouts=3,
               **lrs)
    assert log.episodes == 3 and all(info["status"] == "ok" for info in log.infos)
    tuned, fresh_dir = controller_of(target), tmp_path / "fresh.pt"
    # one Adam step moves each weight by at most the learning rate: the VGG controller started from LeNet's
    assert max(float((tuned[k] - lenet_weights[k]).abs().max()) for k in tuned) <= lr * 1.001
    module.run(vgg_fn, episodes=3, log=SearchLog(None, 3, progress=False), seed=1, checkpoint=fresh_dir,
               rollouts=3, **lrs)
    fresh = controller_of(fresh_dir)
    assert max(float((fresh[k] - lenet_weights[k]).abs().max()) for k in fresh) > 10 * lr

