"""The student evaluator: KD losses, fidelity presets, caching in the results store, divergence."""
import math

import pytest
import torch

from ddc_env.arch import REMOVE, apply_decisions, uniform_choices
from ddc_env.data import DataConfig, load_data
from ddc_env.evaluate import FIDELITIES, Evaluator, Fidelity, distillation_loss, make_fidelity
from ddc_env.store import ResultsStore


@pytest.fixture(scope="module")
def data(synth_dir):
    return load_data(DataConfig("synth", data_dir=str(synth_dir)))


def make_evaluator(teacher, data, fidelity="smoke", **kwargs) -> Evaluator:
    return Evaluator(teacher.net, teacher.spec, data, make_fidelity(fidelity), teacher_id=teacher.meta["sha256"],
                     device="cpu", latency=kwargs.pop("latency", "flops"), **kwargs)


def test_hinton_loss_matches_hand_computation():
    s = torch.tensor([[1.0, 0.0, -1.0]])
    t = torch.tensor([[0.5, 0.5, 0.0]])
    y = torch.tensor([0])
    loss = distillation_loss(Fidelity(loss="hinton", temperature=2.0, alpha=0.75))(s, y, t)
    ps, pt = torch.softmax(s / 2, 1), torch.softmax(t / 2, 1)
    kl = (pt * (pt.log() - ps.log())).sum()
    ce = -torch.log_softmax(s, 1)[0, 0]
    assert loss.item() == pytest.approx((0.75 * 4 * kl + 0.25 * ce).item(), rel=1e-5)
    l2 = distillation_loss(Fidelity(loss="l2_logits"))(s, y, t)
    assert l2.item() == pytest.approx(((s - t) ** 2).mean().item())
    hard = distillation_loss(Fidelity(loss="hard"))(s, y, t)
    assert hard.item() == pytest.approx(ce.item())


def test_fidelity_presets_and_overrides():
    assert set(FIDELITIES) >= {"smoke", "zero", "fast", "standard", "n2n_paper", "ddc_paper"}
    n2n = FIDELITIES["n2n_paper"]
    assert (n2n.epochs, n2n.loss, n2n.optimizer, n2n.lr) == (5, "l2_logits", "adam", 5e-4)
    ddc = FIDELITIES["ddc_paper"]
    assert (ddc.epochs, ddc.loss, ddc.temperature, ddc.alpha) == (20, "hinton", 3.0, 0.9)
    f = make_fidelity({"name": "fast", "epochs": 3})
    assert f.epochs == 3 and f.train_samples == FIDELITIES["fast"].train_samples and f.hash() != FIDELITIES[
        "fast"].hash()
    with pytest.raises(ValueError, match="unknown fidelity 'turbo'"):
        make_fidelity("turbo")
    with pytest.raises(ValueError, match="unknown fidelity field"):
        make_fidelity({"name": "fast", "epoch": 3})
    with pytest.raises(ValueError, match="loss must be one of"):
        Fidelity(loss="mse")


def test_evaluation_record_and_cache(synth_teacher, data, tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    ev = make_evaluator(synth_teacher, data, store=store, run="t")
    spec = apply_decisions(synth_teacher.spec, {"fc1": 0.5, "fc2": REMOVE}, channel_round=1)
    rec = ev.evaluate(spec)
    assert rec["status"] == "ok" and not rec["cache_hit"]
    assert 0.0 <= rec["val_acc"] <= 1.0 and rec["teacher_val_acc"] > 0.5
    assert rec["params"] == spec.params < rec["teacher_params"]
    assert rec["param_ratio"] == pytest.approx(spec.params / synth_teacher.spec.params)
    assert rec["flop_ratio"] < 1.0 and rec["latency_ms"] is None  # latency="flops": nothing timed
    assert rec["spec_hash"] == spec.hash() and rec["train_seconds"] > 0
    # a repeat is a cache hit, from memory and from the store in a fresh evaluator
    assert ev.evaluate(spec)["cache_hit"]
    again = make_evaluator(synth_teacher, data, store=ResultsStore(tmp_path / "results.sqlite"))
    hit = again.evaluate(spec)
    assert hit["cache_hit"] and hit["val_acc"] == rec["val_acc"]
    assert store.count(run="t") == 1


def test_same_seed_same_result(synth_teacher, data):
    spec = apply_decisions(synth_teacher.spec, uniform_choices(synth_teacher.spec, 0.5))
    a = make_evaluator(synth_teacher, data).evaluate(spec)
    b = make_evaluator(synth_teacher, data).evaluate(spec)
    assert a["val_acc"] == b["val_acc"] and a["final_loss"] == b["final_loss"]


def test_kd_training_improves_on_zero_training(synth_teacher, data):
    spec = apply_decisions(synth_teacher.spec, {"fc1": REMOVE, "fc2": REMOVE})  # the classifier re-learns
    zero = make_evaluator(synth_teacher, data, "zero").evaluate(spec)
    trained = make_evaluator(synth_teacher, data, {"name": "smoke", "epochs": 3, "lr": 0.05}).evaluate(spec)
    assert trained["val_acc"] > zero["val_acc"] + 0.1


def test_teacher_logits_are_computed_once(synth_teacher, data, monkeypatch):
    ev = make_evaluator(synth_teacher, data, {"name": "smoke", "views": 2, "epochs": 2})
    calls = []
    original = ev._logits
    monkeypatch.setattr(ev, "_logits", lambda net, x, teacher=False: calls.append(teacher) or original(net, x,
                                                                                                       teacher))
    for w in (0.5, 0.7):
        ev.evaluate(apply_decisions(synth_teacher.spec, uniform_choices(synth_teacher.spec, w)))
    images, logits = ev.teacher_views()
    assert images.shape[0] == 2 and logits.shape == (2, len(ev.train_y), data.num_classes)
    assert calls.count(True) == 2 + 1  # one pass per view, one for the teacher's val accuracy
    assert not torch.equal(images[0], images[1])  # two different augmentation views


def test_diverging_student_gets_a_penalty_record(synth_teacher, data):
    ev = make_evaluator(synth_teacher, data, {"name": "smoke", "lr": 1e12, "schedule": "constant"})
    rec = ev.evaluate(apply_decisions(synth_teacher.spec, {}))
    assert rec["status"] == "diverged" and "non-finite" in rec["reason"]
    from ddc_env.rewards import ddc, n2n
    assert n2n(rec) == -1.0 and ddc(rec, latency="flops") == -1.0


def test_measured_latency(synth_teacher, data):
    ev = make_evaluator(synth_teacher, data, "zero", latency="measured", latency_repeats=5)
    rec = ev.evaluate(apply_decisions(synth_teacher.spec, uniform_choices(synth_teacher.spec, 0.5)))
    assert rec["latency_ms"] > 0 and rec["teacher_latency_ms"] > 0
    assert math.isfinite(rec["latency_ratio"])


def test_class_subset_student(synth_teacher, synth_dir):
    subset = load_data(DataConfig("synth", data_dir=str(synth_dir), classes=("hbar", "blob")))
    ev = make_evaluator(synth_teacher, subset)
    rec = ev.evaluate(apply_decisions(synth_teacher.spec, {}, class_indices=subset.class_indices))
    assert rec["spec"]["units"][-1]["out_features"] == 2
    assert rec["teacher_val_acc"] > 0.5 and rec["val_acc"] > 0.5
