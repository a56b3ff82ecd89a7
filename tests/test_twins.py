"""Benchmark tables and the twins that read them: building (resumable), the shipped LeNet-5 table against fresh live
evaluations, the twin env's contract (same spaces, masks, observations and info keys as the live env), training-seed
noise, simulated cost, and a surrogate's held-out quality."""
from __future__ import annotations

import copy
import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import ddc_env
import ddc_env.configs
import ddc_env.task
from ddc_env import registration
from checkers import check_env
from ddc_env.arch import REMOVE
from ddc_env.env import DDCEnv
from ddc_env.latency import LatencyProtocol
from ddc_env.scoring import LiveScorer
from ddc_env.scoring.surrogate import SurrogateScorer, fit_surrogate
from ddc_env.scoring.table import TableScorer
from ddc_env.students import all_students, sample_students
from ddc_env.tables import TABLES_DIR, BenchTable, TableError, build_table, live_task, measure_latency_table
from ddc_env.train import compute_signature
from ddc_env.task import TaskConfig, load_task

SHIPPED_TEACHER = TABLES_DIR / "lenet5_mnist.teacher.pt"


@pytest.fixture(scope="module")
def synth_table(synth_teacher, synth_dir, tmp_path_factory):
    """A table of the synthetic LeNet-5 task: 40 students at zero (one seed) and 6 of them at smoke (two seeds)."""
    root = tmp_path_factory.mktemp("table")
    config = TaskConfig(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                        channel_round=2, min_channels=2)
    task = load_task(config, progress=False)
    students = {"zero": sample_students(task, 40), "smoke": sample_students(task, 6)}
    table = build_table("synth", config, {"zero": [0], "smoke": [0, 1]}, students, root / "synth.json.gz",
                        store=root / "store.sqlite", protocol=LatencyProtocol(batch_size=8), progress=False)
    return root, config, task, students, table


def test_students_of_a_space(synth_table):
    _, _, task, students, _ = synth_table
    every = all_students(task)
    assert len(every) == len({s.hash() for _, s in every}) > 100  # distinct specs of the whole action space
    assert [s.hash() for _, s in sample_students(task, 10)] == [s.hash() for _, s in students["zero"][:10]]
    first = students["zero"][0][1]
    assert first.hash() == task.student_spec({}).hash()  # the list starts with the teacher's own architecture


def test_a_built_table_reads_back_and_a_rebuild_trains_nothing(synth_table, monkeypatch):
    root, config, task, students, table = synth_table
    loaded = BenchTable.load(root / "synth.json.gz")
    assert loaded.fidelities == ["zero", "smoke"] and loaded.seeds("smoke") == [0, 1]
    assert len(loaded.rows) == 40 + 6 * 2 and loaded.task.key() == task.key()
    spec = students["smoke"][3][1]
    rows = loaded.rows_for(spec.hash(), "smoke")
    assert [r["seed"] for r in rows] == [0, 1] and rows[0]["params"] == spec.params
    assert loaded.spec(spec.hash()).hash() == spec.hash()
    assert loaded.same_compute("smoke") and loaded.compute("smoke") == compute_signature("cpu")  # built here
    noise = loaded.seed_noise("smoke")
    assert noise["students"] == 6 and 0.0 <= noise["mean"] <= noise["p95"] <= noise["max"]
    assert loaded.seed_noise("zero") is None  # one seed: no noise to measure
    calls = []
    monkeypatch.setattr(LiveScorer, "evaluate", lambda self, s: calls.append(s) or {})
    build_table("synth", config, {"zero": [0], "smoke": [0, 1]}, students, root / "again.json.gz",
                store=root / "store.sqlite", protocol=LatencyProtocol(batch_size=8), progress=False)
    assert calls == [] and BenchTable.load(root / "again.json.gz").rows == loaded.rows


def test_a_table_with_kernel_shrink_rebuilds_every_row_to_its_recorded_hash(synth_teacher, synth_dir, tmp_path):
    config = TaskConfig(model="lenet5", teacher=str(synth_teacher.path), dataset="synth", data_dir=str(synth_dir),
                        channel_round=2, min_channels=2, kernel_shrink=True, max_val=64)
    task = load_task(config, progress=False)
    students = sample_students(task, 24)
    assert any(":kernel_1x1" in t for choices, _ in students for t in task.codec.encode(choices).values())
    build_table("kernels", config, {"zero": [0]}, {"zero": students}, tmp_path / "kernels.json.gz",
                store=tmp_path / "store.sqlite", protocol=LatencyProtocol(batch_size=8), progress=False)
    table = BenchTable.load(tmp_path / "kernels.json.gz")
    assert len(table.spec_hashes()) == 24
    assert all(table.spec(h).hash() == h for h in table.spec_hashes())


def test_another_cpus_latency_table_times_the_twin_and_leaves_the_accuracies(synth_table, tmp_path):
    root, _, task, students, _ = synth_table
    table = copy.deepcopy(BenchTable.load(root / "synth.json.gz"))  # the loaded table is cached: change a copy
    entry = measure_latency_table(table, "here", protocol=LatencyProtocol(batch_size=8, warmup=1, unit_rounds=3),
                                  progress=False)
    assert entry["units"].keys() == table.latency["units"].keys() and "signature" in entry["describe"]
    table.save(tmp_path / "devices.json.gz")
    again = BenchTable.load(tmp_path / "devices.json.gz")
    assert again.latency_devices == ["build", "here"] and again.digest == table.digest  # accuracies untouched
    spec = students["zero"][5][1]
    build = TableScorer(again, "zero").evaluate(spec)
    here = TableScorer(again, "zero", device="here").evaluate(spec)
    model = again.latency_model("here")
    assert here["val_acc"] == build["val_acc"] and here["latency_ms"] == model.predict_ms(spec)
    assert here["latency_ratio"] == pytest.approx(model.predict_ms(spec) / model.predict_ms(task.teacher_spec))
    with pytest.raises(TableError, match="no latency table of device 'mars'"):
        TableScorer(again, "zero", device="mars")


def test_ddc_table_latency_adds_this_machine_as_a_device(synth_table, tmp_path, capsys):
    from ddc_env.cli import main

    root, _, _, _, _ = synth_table
    out = tmp_path / "with_here.json.gz"
    assert main(["table", "latency", str(root / "synth.json.gz"), "--name", "here", "--out", str(out), "--quiet"]) == 0
    assert "as device 'here'" in capsys.readouterr().out
    assert BenchTable.load(out).latency_devices == ["build", "here"]
    assert main(["table", "info", str(out)]) == 0 and "here (" in capsys.readouterr().out
    twin = gym.make("DDC-Bench-LeNet5-MNIST", table=str(out), device="here").unwrapped
    assert twin.scorer.inner.device == "here"


def test_table_scorer_seeds_noise_and_missing_students(synth_table):
    root, _, task, students, _ = synth_table
    table = BenchTable.load(root / "synth.json.gz")
    spec = students["smoke"][2][1]
    rows = table.rows_for(spec.hash(), "smoke")
    seed1 = TableScorer(table, "smoke", train_seed=1).evaluate(spec)
    assert seed1["val_acc"] == rows[1]["val_acc"] and seed1["train_seed"] == 1
    mean = TableScorer(table, "smoke", train_seed="mean").evaluate(spec)
    assert mean["val_acc"] == pytest.approx((rows[0]["val_acc"] + rows[1]["val_acc"]) / 2)
    draws = [TableScorer(table, "smoke", train_seed="random", rng=np.random.default_rng(s)).evaluate(spec)
             ["train_seed"] for s in range(20)]
    assert set(draws) == {0, 1}
    with pytest.raises(TableError, match="train_seed must be one of"):
        TableScorer(table, "smoke", train_seed=7)
    with pytest.raises(TableError, match="is not in table"):
        TableScorer(table, "smoke").evaluate(students["zero"][-1][1])
    with pytest.raises(TableError, match="no fidelity 'fast'"):
        TableScorer(table, "fast")


def test_surrogate_predicts_held_out_students(synth_table):
    root, _, task, students, _ = synth_table
    model = fit_surrogate(str(root / "synth.json.gz"), "zero")
    assert model.quality.rows == 40 and model.quality.kendall_tau > 0.5 and model.quality.mae < 0.15
    scorer = SurrogateScorer(BenchTable.load(root / "synth.json.gz"), "zero")
    outside = next(s for _, s in all_students(task) if s.hash() not in {x.hash() for _, x in students["zero"]})
    record = scorer.evaluate(outside)  # any student of the space, not only the table's
    assert record["status"] == "ok" and 0.0 <= record["val_acc"] <= 1.0 and record["params"] == outside.params
    assert record["latency_ms"] > 0 and record["eval_seconds"] > 0 and record["size_bytes"] > 0


def test_table_info_reports_rank_agreement_and_surrogates(synth_table, capsys):
    """``ddc table info --surrogate``: Kendall tau between the fidelity/seed columns on their shared students, the
    surrogate's quality where there are enough rows, and a plain line where there are not."""
    from scipy.stats import kendalltau

    from ddc_env.cli import main

    root, _, _, students, table = synth_table
    assert main(["table", "info", str(root / "synth.json.gz"), "--surrogate"]) == 0
    out = capsys.readouterr().out
    shared = [s.hash() for _, s in students["smoke"]]
    zero, smoke = ({h: table.rows_for(h, f)[0]["val_acc"] for h in shared} for f in ("zero", "smoke"))
    tau = kendalltau([zero[h] for h in shared], [smoke[h] for h in shared]).statistic
    assert f"rank agreement zero seed 0 vs smoke seed 0: Kendall tau {tau:.3f} (6 students)" in out
    assert "rank agreement smoke seed 0 vs smoke seed 1" in out
    assert "surrogate at zero: Kendall tau" in out and "surrogate at smoke: none (" in out


def test_a_fitted_surrogate_is_kept_per_machine(synth_table, monkeypatch, tmp_path):
    """The surrogate is fit once per machine ($DDC_HOME/surrogates, keyed by the table's digest): a new process
    reads it back and predicts the same; an unreadable file is fit again."""
    from ddc_env.scoring import surrogate

    root, _, task, students, _ = synth_table
    monkeypatch.setenv("DDC_HOME", str(tmp_path))
    monkeypatch.setattr(surrogate, "_FITTED", {})
    table = BenchTable.load(root / "synth.json.gz")
    first = fit_surrogate(table, "zero")
    (cached,) = (tmp_path / "surrogates").glob(f"synth-{table.digest}-zero-*.pkl")
    x = np.array([surrogate.features(task, s, 1.0, 2.0) for _, s in students["zero"][:5]])
    fits = []
    monkeypatch.setattr(surrogate, "_fit", lambda *args: fits.append(args) or first)
    for content in (None, b"not a pickle"):
        monkeypatch.setattr(surrogate, "_FITTED", {})  # as in a new process
        if content is not None:
            cached.write_bytes(content)
        again = fit_surrogate(BenchTable.load(root / "synth.json.gz"), "zero")
        assert np.array_equal(again.accuracy.predict(x), first.accuracy.predict(x))
    assert len(fits) == 1  # read back once, fit again once (the corrupt file)


def test_shipped_lenet_table_rows_match_fresh_live_evaluations():
    """A row of the shipped table is what the live scorer gives that student at the table's fidelity and seed (same
    teacher, data, thread count and latency table): bit for bit on the machine kind and precision the table was built
    with, within the table's training-seed noise on any other (an fp32 CPU re-trains what a bf16 one built)."""
    table = BenchTable.load("lenet5_mnist")
    task = live_task(table)
    live = LiveScorer(task, "fast", latency="model", latency_model=table.latency_model(), device="cpu",
                      latency_protocol=LatencyProtocol(batch_size=256), threads=table.meta["threads"])
    same = table.same_compute("fast")
    noise = table.seed_noise("fast")
    assert noise is not None and noise["students"] > 1000
    for spec_hash in table.spec_hashes("fast")[5:7]:
        spec = table.spec(spec_hash)
        record = live.evaluate(spec)
        row = table.rows_for(spec_hash, "fast")[0]
        for key in ("params", "flops", "size_bytes", "latency_ms"):  # machine-independent
            assert record[key] == pytest.approx(row[key], rel=1e-9), key
        if same:
            assert record["val_acc"] == pytest.approx(row["val_acc"], rel=1e-9), f"same machine kind {table.compute('fast')}"
        else:
            assert abs(record["val_acc"] - row["val_acc"]) <= noise["p95"], (
                f"built on {table.compute('fast')}, scored on {compute_signature('cpu')}: beyond the seed noise {noise}")


def test_the_live_lenet_id_on_the_packaged_sample_is_the_twins_problem():
    """gym.make's default teacher for DDC-LeNet5-MNIST on mnist_sample is the one shipped with the twin's table (no
    training), so live and twin pose the same problem; the packaged configs ask for the same teacher recipe."""
    env = gym.make("DDC-LeNet5-MNIST", dataset="mnist_sample", fidelity="smoke", latency="flops").unwrapped
    env.scorer.prepare()  # a live env loads its teacher and data when it first scores a student
    assert env.task.teacher.path == SHIPPED_TEACHER
    assert env.task.key() == BenchTable.load("lenet5_mnist").task.key()
    default = registration.env_config("DDC-LeNet5-MNIST", {}).task_config().recipe()
    for path in Path(ddc_env.configs.__path__[0]).rglob("lenet5_mnist*.yaml"):
        config = yaml.safe_load(path.read_text())
        kwargs = {k: v for k, v in config["env_kwargs"].items() if k in ("teacher_epochs", "teacher_recipe")}
        assert registration.env_config(config["env_id"], kwargs).task_config().recipe() == default, path.name


def test_a_live_env_is_cheap_to_make_and_loads_teacher_and_data_on_its_first_scoring(monkeypatch):
    """The spaces come from the light task (the teacher's sidecar, the dataset catalog): making the env and playing an
    episode up to its last step load nothing; the last step loads teacher and data once."""
    loads = []
    real = ddc_env.task.load_data
    monkeypatch.setattr(ddc_env.task, "load_data", lambda *a, **k: loads.append(1) or real(*a, **k))
    env = gym.make("DDC-LeNet5-MNIST", dataset="mnist_sample", fidelity="smoke", latency="flops").unwrapped
    assert loads == [] and env.task.teacher is None and env.task.data_key == ""
    env.reset(seed=0)
    while True:
        _, _, done, _, info = env.step(int(np.flatnonzero(env.action_masks())[-1]))
        if done:
            break
        assert loads == []
    assert loads == [1] and env.task.teacher.path == SHIPPED_TEACHER and info["status"] == "ok"
    assert env.task.data_key != ""


def test_a_table_records_the_machine_and_precision_it_was_built_with():
    table = BenchTable.load("lenet5_mnist")
    assert table.compute("fast") == {"device_signature": table.meta["device_signature"], "precision": "bf16"}
    here = compute_signature("cpu")
    assert table.same_compute("fast") == (here == table.compute("fast"))
    assert here["precision"] in ("bf16", "fp32") and "torch" in here["device_signature"]


def test_twin_has_the_live_envs_contract():
    twin = gym.make("DDC-Bench-LeNet5-MNIST-v0").unwrapped
    live = DDCEnv(model="lenet5", teacher=str(SHIPPED_TEACHER), dataset="mnist_sample", channel_round=2,
                  min_channels=2, model_kwargs={"in_channels": 1, "input_size": (28, 28)}, latency_batch_size=256,
                  fidelity="smoke", device="cpu")
    assert twin.observation_space == live.observation_space and twin.action_space == live.action_space
    t_obs, t_info = twin.reset(seed=0)
    l_obs, l_info = live.reset(seed=0)
    assert np.array_equal(t_obs, l_obs) and t_info["layer_table"] == l_info["layer_table"]
    actions = []
    while True:  # the same actions on both: the same masks and observations
        mask = twin.action_masks()
        assert np.array_equal(mask, live.action_masks())
        a = int(np.flatnonzero(mask)[-2])
        actions.append(a)
        t_obs, _, done, _, t_info = twin.step(a)
        l_obs, _, _, _, l_info = live.step(a)
        assert np.array_equal(t_obs, l_obs)
        if done:
            break
    assert t_info["spec_hash"] == l_info["spec_hash"] and set(l_info) <= set(t_info)
    assert set(t_info) - set(l_info) == {"train_seed"}
    for mode in ("sequential", "one_shot"):
        check_env(gym.make("DDC-Bench-LeNet5-MNIST-v0", action_mode=mode).unwrapped)


def test_resnet_twin_runs_from_the_shipped_table_alone(monkeypatch, tmp_path):
    """The surrogate twin of ResNet-18 needs no data, teacher or network: its table and model ship in the package;
    every student of the space gets a record (params and FLOPs exact from the IR), and the checkers pass."""
    monkeypatch.setenv("DDC_DATA_DIR", str(tmp_path / "no-data"))
    env = gym.make("DDC-Bench-ResNet18-CIFAR10").unwrapped
    assert env.scorer.fidelity == "zero" and env.scorer.inner.model.quality.kendall_tau >= 0.8
    rng = np.random.default_rng(0)
    rewards = []
    for _ in range(20):
        _, info = env.reset(seed=int(rng.integers(1 << 30)))
        done = False
        while not done:
            _, reward, done, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
        spec = env.scorer.task.student_spec({k: REMOVE if w == 0.0 else w for k, w in info["choices"].items()})
        assert spec.hash() == info["spec_hash"]
        assert info["status"] == "ok" and 0.0 <= info["val_acc"] <= 1.0 and info["simulated_seconds"] > 0
        assert info["param_ratio"] == pytest.approx(spec.params / env.scorer.task.teacher_spec.params)
        rewards.append(reward)
    assert np.std(rewards) > 0.01  # the calibrated reward varies over random students
    check_env(env)


def test_twin_simulated_cost_and_cache_hits():
    env = gym.make("DDC-Bench-LeNet5-MNIST", fidelity="fast").unwrapped
    spec_hash = None
    for expected_hit in (False, True):
        env.reset(seed=0)
        while True:
            _, _, done, _, info = env.step(env.action_of(0.5) if env.action_masks()[env.action_of(0.5)]
                                           else env.action_of(1.0))
            if done:
                break
        assert info["cache_hit"] is expected_hit
        row = BenchTable.load("lenet5_mnist").rows_for(info["spec_hash"], "fast")[0]
        assert info["simulated_seconds"] == (0.0 if expected_hit else row["eval_seconds"])
        assert info["val_acc"] == row["val_acc"] and info["eval_seconds"] == row["eval_seconds"]
        spec_hash = spec_hash or info["spec_hash"]
        assert info["spec_hash"] == spec_hash


def test_twin_random_training_seed_is_seeded():
    def accuracies(seed: int) -> list[float]:
        env = gym.make("DDC-Bench-LeNet5-MNIST", train_seed="random", stages="joint").unwrapped
        env.reset(seed=seed)
        rng = np.random.default_rng(0)
        out = []
        for _ in range(30):
            env.reset()
            while True:
                _, _, done, _, info = env.step(int(rng.choice(np.flatnonzero(env.action_masks()))))
                if done:
                    out.append((info["val_acc"], info["train_seed"]))
                    break
        return out

    assert accuracies(3) == accuracies(3)
    assert {s for _, s in accuracies(3)} == {0, 1}


@pytest.mark.parametrize("overrides, message", [
    ({"backend": "magic"}, r"unknown backend 'magic'"),
    ({"table": "nope"}, r"no benchmark table 'nope'"),
    ({"fidelity": "standard"}, r"no fidelity 'standard'"),
    ({"train_seed": 2.5}, r"train_seed must be"),
    ({"backend": "surrogate", "train_seed": 0}, r"train_seed picks a row"),
    ({"dataset": "cifar10"}, r"unknown DDCBenchEnv argument\(s\) \['dataset'\]"),
])
def test_twin_arguments_are_checked(overrides, message):
    with pytest.raises(ValueError, match=message):
        gym.make("DDC-Bench-LeNet5-MNIST", **overrides)


def _random_rewards(env: gym.Env, episodes: int, seed: int = 0) -> np.ndarray:
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(episodes):
        env.reset()
        while True:
            _, reward, done, _, _ = env.step(int(rng.choice(np.flatnonzero(env.unwrapped.action_masks()))))
            if done:
                out.append(reward)
                break
    return np.array(out)


def test_the_default_reward_varies_over_random_students():
    """Over 100 random masked students of the LeNet-5 twin at its default fidelity, the default (calibrated) reward
    has a standard deviation >= 0.1 and more than half the students score above 0.01; the paper's DDC reward is
    below 0.01 for most of the same students."""
    calibrated = _random_rewards(gym.make("DDC-Bench-LeNet5-MNIST"), 100)
    assert calibrated.std() >= 0.1 and np.mean(calibrated > 0.01) >= 0.5
    paper = _random_rewards(gym.make("DDC-Bench-LeNet5-MNIST", reward="ddc"), 100)
    assert np.mean(paper > 0.01) < 0.5 and paper.std() < 0.05


@pytest.mark.parametrize("name", ["lenet5_mnist", "resnet18_cifar10"])
def test_the_shipped_tables_carry_the_avx2_epycs_unit_times(name):
    table = BenchTable.load(name)
    assert table.latency_devices == ["build", "epyc-avx2"]
    entry = table.latencies["epyc-avx2"]
    assert entry["units"].keys() == table.latency["units"].keys() and "AVX2" in entry["describe"]["signature"]
    spec = table.spec(table.spec_hashes(table.default_fidelity)[1])
    build = TableScorer(table, table.default_fidelity).evaluate(spec)
    avx2 = TableScorer(table, table.default_fidelity, device="epyc-avx2").evaluate(spec)
    assert avx2["val_acc"] == build["val_acc"] and avx2["latency_ratio"] != build["latency_ratio"]


def test_ddc_table_extend_adds_the_students_a_surrogate_twins_runs_reached(synth_teacher, synth_dir, tmp_path, capsys):
    """``ddc table extend``: the best students of a benchmark on a table's surrogate twin that the table lacks are
    scored live with the table's task and latency table and added as rows (recorded as an extension, with this
    machine's compute); a second extension trains nothing, and results of another task are one line, no write."""
    from ddc_env.cli import main
    from ddc_env.lab.benchmark import make_benchmark_config, run_benchmark
    from ddc_env.store import ResultsStore

    table_file, store = tmp_path / "synth.json.gz", tmp_path / "store.sqlite"
    assert main(["table", "build", "synth", "--env", "DDC-LeNet5-MNIST", "--set", f"teacher={synth_teacher.path}",
                 "dataset=synth", f"data_dir={synth_dir}", "channel_round=2", "min_channels=2", "device=cpu",
                 "latency_batch_size=8", "--fidelity", "zero=24", "--out", str(table_file), "--store", str(store), "--quiet"]) == 0
    table = BenchTable.load(table_file)
    config = make_benchmark_config("DDC-Bench-LeNet5-MNIST-v0", ["random"], seeds=range(3), budget=12,
                                   env_kwargs={"table": str(table_file), "backend": "surrogate"},
                                   reference_samples=200, bootstrap_reps=100)
    run_benchmark(config, tmp_path / "bench", progress=False)
    results = tmp_path / "bench" / "results.csv"
    new = {h for h in (r["spec_hash"] for r in csv.DictReader(results.open())) if h not in table.spec_hashes()}
    assert new, "the surrogate twin's best students should include some the table lacks"
    out = tmp_path / "extended.json.gz"
    capsys.readouterr()
    assert main(["table", "extend", str(table_file), "--results", str(results), "--out", str(out), "--store",
                 str(store), "--quiet"]) == 0
    assert f"{len(new)} new rows" in capsys.readouterr().out
    extended = BenchTable.load(out)
    assert len(extended.rows) == 24 + len(new) and set(extended.spec_hashes()) == set(table.spec_hashes()) | new
    (extension,) = extended.meta["extensions"]
    assert set(extension["spec_hashes"]["zero"]) == new and extension["command"].startswith("ddc table extend")
    live = LiveScorer(live_task(extended), "zero", latency="model", latency_model=extended.latency_model(),
                      device="cpu", latency_protocol=extended.latency_model().protocol, threads=1)
    for spec_hash in sorted(new)[:2]:
        row, record = extended.rows_for(spec_hash, "zero")[0], live.evaluate(extended.spec(spec_hash))
        assert row["val_acc"] == record["val_acc"] and row["latency_ms"] == record["latency_ms"]
        assert extended.compute("zero", spec_hash) == compute_signature("cpu", extended.fidelity_amp("zero"))
        assert extended.same_compute("zero", spec_hash=spec_hash)
    assert main(["table", "info", str(out)]) == 0
    assert f"extended {extension['date']}: {len(new)} students at zero on " in capsys.readouterr().out
    evaluations = ResultsStore(store).count()
    assert main(["table", "extend", str(out), "--results", str(results), "--store", str(store), "--quiet"]) == 0
    assert ResultsStore(store).count() == evaluations and len(BenchTable.load(out).rows) == len(extended.rows)

    other = tmp_path / "other.csv"
    rows = list(csv.DictReader(results.open()))
    rows[0]["spec_hash"] = "0123456789abcdef"
    with other.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    before = out.read_bytes()
    assert main(["table", "extend", str(out), "--results", str(other), "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "line 2: its student 0123456789abcdef is not one of table 'synth'" in err and "\n" not in err
    assert out.read_bytes() == before
