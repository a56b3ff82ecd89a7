"""The scoring seam: the live KD scorer, the caching wrapper over the results store, fidelity presets and checks,
BatchNorm recalibration of what inheritance changed, and the isolation of the global RNG."""
import math
import threading

import pytest
import torch

from ddc_env.arch import REMOVE, uniform_choices
from ddc_env.distill import FIDELITIES, Fidelity, distillation_loss, make_fidelity
from ddc_env.latency import LatencyProtocol
from ddc_env.scoring import CachedScorer, LiveScorer
from ddc_env.store import ResultsStore
from ddc_env.task import TaskConfig, load_task


@pytest.fixture(scope="module")
def task(synth_teacher, synth_dir):
    return load_task(TaskConfig(model="lenet5", teacher=synth_teacher, dataset="synth", data_dir=str(synth_dir),
                                channel_round=2, min_channels=2), progress=False)


@pytest.fixture(scope="module")
def subset_task(synth_teacher, synth_dir):
    return load_task(TaskConfig(model="lenet5", teacher=synth_teacher, dataset="synth", data_dir=str(synth_dir),
                                classes=("hbar", "blob"), channel_round=2, min_channels=2), progress=False)


def scorer(task, fidelity="smoke", **kwargs) -> LiveScorer:
    return LiveScorer(task, fidelity, latency=kwargs.pop("latency", "flops"), device="cpu", **kwargs)


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


@pytest.mark.parametrize("field, value, message", [
    ("lr", math.nan, "fidelity lr must be a finite number > 0"),
    ("lr", -0.1, "fidelity lr must be a finite number > 0"),
    ("lr", "0.1", "fidelity lr must be a finite number"),
    ("epochs", 1.5, "fidelity epochs must be an integer >= 0"),
    ("val_samples", 0, "fidelity val_samples must be a positive integer or None"),
    ("train_samples", -5, "fidelity train_samples must be a positive integer or None"),
    ("seed", "x", "fidelity seed must be an integer >= 0"),
    ("weight_decay", math.nan, "fidelity weight_decay must be a finite number >= 0"),
    ("alpha", 1.5, "fidelity alpha must be a finite number >= 0 and <= 1"),
    ("loss", "mse", "unknown fidelity loss 'mse'"),
    ("augment", "yes", "fidelity augment must be true or false"),
])
def test_every_fidelity_field_is_checked_at_construction(field, value, message):
    with pytest.raises(ValueError, match=message):
        make_fidelity({"name": "fast", field: value})


def test_record_and_cache(task, tmp_path):
    store = ResultsStore(tmp_path / "results.sqlite")
    cached = CachedScorer(scorer(task), store, run="t")
    spec = task.student_spec({"fc1": 0.5, "fc2": REMOVE})
    rec = cached.score(spec)
    assert rec["status"] == "ok" and not rec["cache_hit"] and rec["simulated_seconds"] == rec["eval_seconds"] > 0
    assert 0.0 <= rec["val_acc"] <= 1.0 and rec["teacher_val_acc"] > 0.5
    assert rec["params"] == spec.params < rec["teacher_params"]
    assert rec["param_ratio"] == pytest.approx(spec.params / task.teacher_spec.params)
    assert rec["flop_ratio"] < 1.0 and rec["latency_ms"] is None  # latency="flops": nothing timed
    assert rec["spec_hash"] == spec.hash() and rec["train_seconds"] > 0
    # a repeat is a cache hit, from memory and from the store in a fresh scorer; a hit costs no simulated time
    hit = cached.score(spec)
    assert hit["cache_hit"] and hit["simulated_seconds"] == 0.0
    again = CachedScorer(scorer(task), ResultsStore(tmp_path / "results.sqlite")).score(spec)
    assert again["cache_hit"] and again["val_acc"] == rec["val_acc"]
    assert store.count(run="t") == 1


def test_a_student_in_flight_is_scored_once(task, tmp_path):
    """Two requests for the same student while it is being scored: one training, one row, one hit."""
    inner = scorer(task)
    started, release, calls = threading.Event(), threading.Event(), []
    evaluate = inner.evaluate

    def slow(spec):
        calls.append(spec.hash())
        started.set()
        release.wait(10)
        return evaluate(spec)

    inner.evaluate = slow
    cached = CachedScorer(inner, ResultsStore(tmp_path / "r.sqlite"))
    spec = task.student_spec({"fc1": 0.25})
    first: dict = {}
    worker = threading.Thread(target=lambda: first.update(cached.score(spec)))
    worker.start()
    started.wait(10)
    second: dict = {}
    other = threading.Thread(target=lambda: second.update(cached.score(spec)))  # in flight: waits for the first
    other.start()
    release.set()
    worker.join(10)
    other.join(10)
    assert calls == [spec.hash()] and not first["cache_hit"] and second["cache_hit"]
    assert second["val_acc"] == first["val_acc"] and cached.store.count() == 1


def test_same_seed_same_result_and_seeds_differ(task):
    spec = task.student_spec(uniform_choices(task.teacher_spec, 0.5))
    a = scorer(task).evaluate(spec)
    b = scorer(task).evaluate(spec)
    assert a["val_acc"] == b["val_acc"] and a["final_loss"] == b["final_loss"]
    c = scorer(task, {"name": "smoke", "seed": 1}).evaluate(spec)
    assert c["final_loss"] != a["final_loss"]


def test_kd_training_improves_on_zero_training(task):
    spec = task.student_spec({"conv2": 0.25, "fc1": 0.25, "fc2": 0.25})
    zero = scorer(task, "zero").evaluate(spec)
    trained = scorer(task, {"name": "smoke", "epochs": 4, "lr": 0.05}).evaluate(spec)
    assert trained["val_acc"] > zero["val_acc"] + 0.05


def counted_teacher_passes(sc: LiveScorer, monkeypatch) -> list[bool]:
    """The ``teacher`` flag of every logits pass ``sc``'s distiller makes from now on."""
    calls: list[bool] = []
    original = sc.distiller.logits
    monkeypatch.setattr(sc.distiller, "logits",
                        lambda net, x, teacher=False: calls.append(teacher) or original(net, x, teacher))
    return calls


def test_teacher_logits_are_computed_once(task, monkeypatch, tmp_path):
    """Once per process, and once per machine: another process (here: another scorer) reads the teacher's logits of
    the same views from $DDC_HOME, bit-identical; a corrupt file is computed again."""
    monkeypatch.setenv("DDC_HOME", str(tmp_path))
    fidelity = {"name": "smoke", "views": 2, "epochs": 2}
    sc = scorer(task, fidelity)
    calls = counted_teacher_passes(sc, monkeypatch)
    for w in (0.5, 0.7):
        sc.evaluate(task.student_spec(uniform_choices(task.teacher_spec, w)))
    images, logits = sc.distiller.teacher_views()
    assert images.shape[0] == 2 and logits.shape == (2, len(sc.distiller.train_y), task.data.num_classes)
    assert calls.count(True) == 2 + 1  # one pass per view, one for the teacher's val accuracy
    assert not torch.equal(images[0], images[1])  # two different augmentation views
    [cached] = (tmp_path / "teacher_logits").glob("*.pt")
    again = scorer(task, fidelity)
    calls = counted_teacher_passes(again, monkeypatch)
    assert torch.equal(again.distiller.teacher_views()[1], logits) and calls == []
    cached.write_bytes(b"not a tensor file")
    corrupt = scorer(task, fidelity)
    calls = counted_teacher_passes(corrupt, monkeypatch)
    assert torch.equal(corrupt.distiller.teacher_views()[1], logits) and calls == [True, True]
    assert torch.equal(torch.load(cached, weights_only=True), logits)  # replaced by the recomputed logits
    other_views = scorer(task, {**fidelity, "views": 1})
    calls = counted_teacher_passes(other_views, monkeypatch)
    assert other_views.distiller.teacher_views()[1].shape[0] == 1 and calls == [True]  # other images: another key


def test_diverging_student_gets_a_penalty_record(task):
    rec = scorer(task, {"name": "smoke", "lr": 1e12, "schedule": "constant"}).evaluate(task.student_spec({}))
    assert rec["status"] == "diverged" and "non-finite" in rec["reason"]
    from ddc_env.rewards import ddc, n2n
    assert n2n(rec) == -1.0 and ddc(rec, time="flops") == -1.0


def test_identity_student_reproduces_the_teacher_at_zero(task, subset_task):
    """Recalibrating only what inheritance changed: the uncompressed student is exactly the teacher, on all classes
    and on a class subset (whose classifier rows were narrowed, which changes no BatchNorm input)."""
    for t in (task, subset_task):
        sc = scorer(t, "zero")
        rec = sc.evaluate(t.student_spec({}))
        assert rec["val_acc"] == pytest.approx(rec["teacher_val_acc"], abs=0.003)
        assert rec["val_acc"] == pytest.approx(sc.teacher_record()["val_acc"], abs=0.003)
    assert subset_task.class_indices == (0, 2)


def test_identity_student_computes_the_teachers_function_after_recalibration(task, subset_task):
    """At ``zero`` (inherit + BatchNorm recalibration, no training) the uncompressed student's logits are the
    teacher's (its subset's rows on a class subset): re-estimating unchanged BN layers used to move every logit and
    cost the identity student 0.9 points of accuracy (4.7 on a two-class subset) on the shared ResNet-18."""
    for t in (task, subset_task):
        d = scorer(t, "zero").distiller
        student = d.init_student(t.student_spec({})).eval()
        x = d.val_x[:64]
        assert torch.allclose(d.logits(student, x), d.logits(d.teacher, x, teacher=True), atol=1e-5)


def test_only_stale_batchnorms_are_recalibrated(task):
    from ddc_env.arch import stale_batchnorms

    d = scorer(task, "zero").distiller
    spec = task.student_spec({"conv2": 0.5})  # conv1 untouched; conv2 narrower: its own BN keeps exact statistics
    student = d.init_student(spec)
    stale = stale_batchnorms(student, task.teacher_spec, spec)
    assert student.unit("conv1").bn not in stale and student.unit("conv2").bn not in stale
    teacher_bn = d.teacher.unit("conv1").bn
    assert torch.equal(student.unit("conv1").bn.running_mean, teacher_bn.running_mean)
    # a narrower conv1 is the first changed unit: every later BN is stale, conv1's own is exact
    spec = task.student_spec({"conv1": 0.5})
    student = d.init_student(spec)
    stale = stale_batchnorms(student, task.teacher_spec, spec)
    assert student.unit("conv1").bn not in stale and student.unit("conv2").bn in stale


def test_scoring_leaves_the_global_rng_alone(task):
    """An agent sampling from torch's global RNG draws the same numbers whether or not students are scored."""
    sc = scorer(task)
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    torch.rand(2)
    sc.evaluate(task.student_spec({"fc1": 0.5}))
    sc.evaluate(task.student_spec({"conv1": 0.25}))
    assert torch.equal(torch.rand(3), expected[2:])


def test_latency_model_record(task):
    # batches of 256, as the MNIST ids time LeNet-5: at batch 1 its units take microseconds, mostly overhead, and a
    # half-width student is not reliably faster
    protocol = LatencyProtocol(batch_size=256)
    sc = scorer(task, "zero", latency="model", latency_protocol=protocol)
    rec = sc.evaluate(task.student_spec(uniform_choices(task.teacher_spec, 0.5)))
    assert rec["latency_ms"] > 0 and rec["teacher_latency_ms"] == sc.teacher_record()["latency_ms"] > 0
    assert 0 < rec["latency_ratio"] < 1.0
    # the same student in another scorer (the cache is on disk): the same time
    assert scorer(task, "zero", latency="model", latency_protocol=protocol).evaluate(task.student_spec(
        uniform_choices(task.teacher_spec, 0.5)))["latency_ms"] == rec["latency_ms"]


def test_measured_latency_is_paired_with_the_teacher(task):
    sc = scorer(task, "zero", latency="measured")
    rec = sc.evaluate(task.student_spec(uniform_choices(task.teacher_spec, 0.5)))
    assert rec["latency_ms"] > 0 and rec["teacher_latency_ms"] > 0 and rec["latency_spread_ms"] >= 0
    assert rec["teacher_latency_spread_ms"] >= 0
    assert rec["latency_ratio"] == pytest.approx(rec["latency_ms"] / rec["teacher_latency_ms"])


def test_class_subset_student(subset_task):
    rec = scorer(subset_task).evaluate(subset_task.student_spec({}))
    assert rec["spec"]["units"][-1]["out_features"] == 2
    assert rec["teacher_val_acc"] > 0.5 and rec["val_acc"] > 0.5
