"""Tests for ddc_env.rewards."""

from __future__ import annotations

import math
import pickle
from typing import Any

import pytest

from ddc_env import rewards


def make_record(**overrides: Any) -> dict[str, Any]:
    """A valid record: acc 0.85/0.9, params 300/1000, flops 500/1000, latency 2/10 ms, size 1200/4000."""
    record = {
        "status": "ok",
        "val_acc": 0.85,
        "teacher_val_acc": 0.9,
        "params": 300,
        "teacher_params": 1000,
        "flops": 500,
        "teacher_flops": 1000,
        "latency_ms": 2.0,
        "teacher_latency_ms": 10.0,
        "size_bytes": 1200,
        "teacher_size_bytes": 4000,
    }
    record.update(overrides)
    return record


def logistic(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def test_ratios() -> None:
    r = rewards.ratios(make_record())
    assert r == pytest.approx(
        {"acc_ratio": 0.85 / 0.9, "param_ratio": 0.3, "flop_ratio": 0.5, "latency_ratio": 0.2, "size_ratio": 0.3}
    )
    assert rewards.ratios(make_record(latency_ms=None))["latency_ratio"] is None
    with pytest.raises(ValueError, match="teacher_params"):
        rewards.ratios(make_record(teacher_params=0))


def test_n2n_hand_computed() -> None:
    # C = 1 - 100/1000 = 0.9; C(2 - C) = 0.9 * 1.1 = 0.99; acc ratio 0.8/0.9; R = 0.88
    record = make_record(val_acc=0.8, teacher_val_acc=0.9, params=100, teacher_params=1000)
    assert rewards.n2n(record) == pytest.approx(0.88)
    # the teacher itself: C = 0 -> 0
    assert rewards.n2n(make_record(val_acc=0.9, params=1000)) == 0.0


@pytest.mark.parametrize("status", ["diverged", "invalid"])
def test_failed_status_gives_minus_one(status: str) -> None:
    record = make_record(status=status, val_acc=None, params=None)
    assert rewards.n2n(record) == -1.0
    assert rewards.ddc(record) == -1.0
    assert rewards.BudgetReward(max_param_ratio=0.5)(record) == -1.0


def test_unknown_status_rejected() -> None:
    with pytest.raises(ValueError, match="status"):
        rewards.n2n(make_record(status="done"))


def test_ddc_default_hand_computed() -> None:
    # A/A_t = 0.85/0.9 = 0.94444, T/T_t = 2/10 = 0.2, P/P_t = 300/1000 = 0.3, slope 15
    acc_term = 1.0 / (1.0 + math.exp(-15 * (0.85 / 0.9 - 0.9)))  # sigma(0.6667) = 0.66076
    time_term = 1.0 / (1.0 + math.exp(-1.5))  # sigma(-15 * (0.2 - 0.3)) = 0.81757
    param_term = 1.0 / (1.0 + math.exp(-4.5))  # sigma(-15 * (0.3 - 0.6)) = 0.98901
    expected = acc_term * time_term * param_term
    assert expected == pytest.approx(0.53428, abs=1e-5)
    assert rewards.ddc(make_record()) == pytest.approx(expected)


def test_ddc_thresholds_and_slope_configurable() -> None:
    # slope 10, acc threshold 0.95, time threshold 0.1, params threshold 0.5
    expected = logistic(10 * (0.85 / 0.9 - 0.95)) * logistic(-10 * (0.2 - 0.1)) * logistic(-10 * (0.3 - 0.5))
    got = rewards.ddc(make_record(), acc_threshold=0.95, time_threshold=0.1, params_threshold=0.5, slope=10.0)
    assert got == pytest.approx(expected)
    assert got != pytest.approx(rewards.ddc(make_record()))


def test_ddc_flops_vs_latency_time() -> None:
    # time="flops": T/T_t = 500/1000 = 0.5 -> time term sigma(-15 * 0.2) = sigma(-3)
    expected = logistic(15 * (0.85 / 0.9 - 0.9)) * logistic(-3.0) * logistic(4.5)
    assert rewards.ddc(make_record(), time="flops") == pytest.approx(expected)
    # flops mode ignores latency entirely, so it works without it
    no_latency = make_record(latency_ms=None, teacher_latency_ms=None)
    assert rewards.ddc(no_latency, time="flops") == pytest.approx(expected)
    with pytest.raises(ValueError, match="latency_ms"):
        rewards.ddc(no_latency)


def test_ddc_extreme_values_do_not_overflow() -> None:
    record = make_record(params=10**9)
    assert rewards.ddc(record, slope=1e6) == 0.0


def test_ddc_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown time 'wallclock'"):
        rewards.ddc(make_record(), time="wallclock")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slope"):
        rewards.DDCReward(slope=0.0)


def test_budget_in_budget_gets_base_reward() -> None:
    budget = rewards.BudgetReward(max_param_ratio=0.5, eps0=0.5)
    record = make_record()  # param ratio 0.3 <= 0.5
    assert budget.within_budget(record)
    assert budget(record) == pytest.approx(rewards.n2n(record))
    # the limit is inclusive
    assert rewards.BudgetReward(max_param_ratio=0.3)(record) == pytest.approx(rewards.n2n(record))


def test_budget_violator_formula() -> None:
    # param ratio 0.3 > 0.2: violator. n2n R = (0.85/0.9) * 0.7 * 1.3 = 0.85944
    record = make_record()
    base = (0.85 / 0.9) * 0.7 * 1.3
    assert rewards.n2n(record) == pytest.approx(base)
    budget = rewards.BudgetReward(max_param_ratio=0.2, eps0=0.5, anneal_episodes=10)
    assert not budget.within_budget(record)
    assert budget(record) == pytest.approx((0.5 - 1.0) + 0.5 * base)  # -0.07028
    budget.at_episode(10)
    assert budget.epsilon() == 0.0
    assert budget(record) == -1.0  # (0 - 1) + 0 * R


def test_budget_multiple_limits_and_base() -> None:
    record = make_record()  # flop ratio 0.5, latency ratio 0.2
    flops_ok = rewards.BudgetReward(max_flop_ratio=0.5, max_latency_ratio=0.25, base="ddc", eps0=0.0)
    assert flops_ok(record) == pytest.approx(rewards.ddc(record))
    latency_bad = rewards.BudgetReward(max_flop_ratio=0.5, max_latency_ratio=0.1, base="ddc", eps0=0.0)
    assert latency_bad(record) == -1.0
    with pytest.raises(ValueError, match="latency_ms"):
        latency_bad(make_record(latency_ms=None))


def test_budget_epsilon_anneals_linearly_to_zero() -> None:
    budget = rewards.BudgetReward(max_param_ratio=0.5, eps0=0.8, anneal_episodes=4)
    assert [budget.epsilon(s) for s in range(6)] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0, 0.0])
    assert budget.epsilon() == 0.8
    assert [budget.at_episode(e) for e in range(1, 6)] == pytest.approx([0.6, 0.4, 0.2, 0.0, 0.0])
    assert budget.episodes == 5
    assert budget.at_episode(2) == pytest.approx(0.4)
    assert rewards.BudgetReward(max_param_ratio=0.5, anneal_episodes=0).epsilon() == 0.0


def test_budget_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="at least one"):
        rewards.BudgetReward()
    with pytest.raises(ValueError, match="eps0"):
        rewards.BudgetReward(max_param_ratio=0.5, eps0=1.5)
    with pytest.raises(ValueError, match="max_flop_ratio"):
        rewards.BudgetReward(max_flop_ratio=-1.0)
    with pytest.raises(ValueError, match="episodes must be an integer >= 0"):
        rewards.BudgetReward(max_param_ratio=0.5).at_episode(-1)
    with pytest.raises(ValueError, match="max_param_ratio must be a finite number"):
        rewards.BudgetReward(max_param_ratio=math.nan)


def test_make_reward_specs() -> None:
    record = make_record()
    assert rewards.make_reward("n2n") is rewards.n2n
    assert rewards.make_reward({"name": "n2n"}) is rewards.n2n
    assert rewards.make_reward("ddc")(record) == pytest.approx(rewards.ddc(record))
    slope10 = rewards.make_reward({"name": "ddc", "slope": 10, "time": "flops"})
    assert slope10(record) == pytest.approx(rewards.ddc(record, slope=10, time="flops"))
    budget = rewards.make_reward({"name": "budget", "max_param_ratio": 0.2, "base": {"name": "ddc"}, "eps0": 0.0})
    assert isinstance(budget, rewards.BudgetReward)
    assert budget(record) == -1.0

    def custom(rec: dict[str, Any]) -> float:
        return rec["val_acc"]

    assert rewards.make_reward(custom) is custom


def test_make_reward_does_not_mutate_spec() -> None:
    spec = {"name": "ddc", "slope": 10}
    rewards.make_reward(spec)
    assert spec == {"name": "ddc", "slope": 10}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", r"allowed names: \['amc', 'budget', 'calibrated', 'ddc', 'n2n'\]"),
        ({"slope": 3}, "unknown reward None"),
        ({"name": "ddc", "slop": 3}, r"unknown option\(s\) for reward 'ddc' \['slop'\].*acc_threshold.*slope"),
        ({"name": "n2n", "slope": 3}, r"allowed: \[\]"),
        ({"name": "ddc", "time": "wall"}, "unknown time 'wall'"),
        ({"name": "ddc", "slope": math.nan}, "slope must be a finite number > 0"),
        (3, "reward spec must be"),
    ],
)
def test_make_reward_errors(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rewards.make_reward(spec)


@pytest.mark.parametrize(
    "spec",
    ["n2n", {"name": "ddc", "slope": 10.0}, {"name": "budget", "max_param_ratio": 0.2, "base": "ddc", "eps0": 0.5}],
)
def test_rewards_pickle_round_trip(spec: Any) -> None:
    reward = rewards.make_reward(spec)
    if isinstance(reward, rewards.BudgetReward):
        reward.at_episode(1)
    clone = pickle.loads(pickle.dumps(reward))
    record = make_record()
    assert clone(record) == reward(record)
    if isinstance(reward, rewards.BudgetReward):
        assert clone.episodes == 1


def test_calibrated_reward_fits_thresholds_and_slopes_to_uniform_students() -> None:
    def rec(acc: float, latency: float, params: float) -> dict[str, Any]:
        return make_record(val_acc=acc * 0.9, latency_ms=latency * 10.0, params=int(params * 1000))

    reference = {"floor": rec(0.80, 0.30, 0.10), "target": rec(0.90, 0.50, 0.30), "wide": rec(0.98, 0.90, 0.70)}
    fitted = rewards.CalibratedReward(steepness=4.0).fit(reference)
    assert fitted.acc_threshold == pytest.approx(0.80) and fitted.acc_slope == pytest.approx(4.0 / 0.18)
    assert fitted.time_threshold == pytest.approx(0.50) and fitted.time_slope == pytest.approx(4.0 / 0.60)
    assert fitted.params_threshold == pytest.approx(0.30) and fitted.params_slope == pytest.approx(4.0 / 0.60)
    student = rec(0.85, 0.40, 0.20)
    expected = logistic(4 / 0.18 * 0.05) * logistic(-4 / 0.6 * -0.1) * logistic(-4 / 0.6 * -0.1)
    assert fitted(student) == pytest.approx(expected)
    flat = {"floor": rec(0.99, 0.30, 0.10), "target": rec(0.99, 0.50, 0.30), "wide": rec(0.99, 0.90, 0.70)}
    assert rewards.CalibratedReward().fit(flat).acc_slope == pytest.approx(4.0 / 0.01)  # a flat term: spread 0.01
    with pytest.raises(ValueError, match="fitted to a task first"):
        rewards.CalibratedReward()(student)
    with pytest.raises(ValueError, match="floor_width must be below wide_width"):
        rewards.CalibratedReward(floor_width=0.9, wide_width=0.5)
