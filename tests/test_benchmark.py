"""``ddc benchmark``: a tiny run on the tabular LeNet-5 twin through the CLI, the normalized score against a hand
computation on a three-student toy table, ``--validate`` catching a forged result, and the resume of a killed
benchmark (finished runs kept, the killed one continued to the same episodes as an uninterrupted benchmark)."""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
import os
from pathlib import Path

import pytest

from ddc_env.arch import NetSpec
from ddc_env.cli import main
from ddc_env.lab import benchmark as bench
from ddc_env.lab.backend import BackendOptions, backend_flags
from ddc_env.lab.benchmark import Reference
from ddc_env.lab.runs import RunLog
from ddc_env.tables import BenchTable
from ddc_env.task import Task

TWIN = "DDC-Bench-LeNet5-MNIST-v0"
TOY_SPEC = {"arch": "mlp", "in_channels": 1, "input_size": [2, 2],
            "units": [{"type": "flatten", "name": "flatten"},
                      {"type": "linear", "name": "fc1", "out_features": 8, "relu": True},
                      {"type": "linear", "name": "fc2", "out_features": 3, "relu": False}]}
TOY_ACCURACY = {"remove": 0.6, 0.5: 0.8, 1.0: 0.9}  # fc1 removed / at half width / kept whole; the teacher: 0.9


@pytest.fixture(scope="module")
def toy_table(tmp_path_factory) -> tuple[Path, dict]:
    """A table of a one-decision task (fc1: remove, width 0.5 or 1.0): three students. A masked random episode
    removes fc1 with probability 1/2 (removal pass) and keeps it at each width with 1/4 (shrink pass)."""
    task = Task(NetSpec.from_dict(TOY_SPEC), "toy-teacher", "toy-data", "toy", width_choices=(0.5, 1.0),
                channel_round=2, min_channels=2)
    teacher = {"val_acc": 0.9, "params": task.teacher_spec.params, "flops": task.teacher_spec.flops,
               "size_bytes": 1000, "latency_ms": 1.0}
    rows, choices, students = [], {}, {}
    for choice, accuracy in TOY_ACCURACY.items():
        spec = task.student_spec({"fc1": choice})
        students[choice] = spec
        choices[spec.hash()] = [0.0 if choice == "remove" else choice]
        rows.append({"spec_hash": spec.hash(), "fidelity": "fast", "seed": 0, "status": "ok", "val_acc": accuracy,
                     "params": spec.params, "flops": spec.flops, "size_bytes": 500, "latency_ms": 0.5,
                     "eval_seconds": 2.0, "train_seconds": 1.0, "train_images_per_second": 1.0, "final_loss": 0.1})
    meta = {"default_fidelity": "fast", "fidelities": {"fast": {"seeds": [0], "fidelity": {}, "teacher": teacher}}}
    table = BenchTable("toy", task, meta, {"describe": {}, "units": {}}, choices, rows)
    path = table.save(tmp_path_factory.mktemp("toy") / "toy.json.gz")
    return path, {c: s.params / task.teacher_spec.params for c, s in students.items()}


def _toy_config(path: Path, budget: int = 2, seeds: range = range(2)) -> bench.BenchmarkConfig:
    return bench.make_benchmark_config(TWIN, ["random"], seeds=seeds, budget=budget, bootstrap_reps=200,
                                       env_kwargs={"table": str(path), "reward": "n2n"})


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_a_tiny_benchmark_on_the_tabular_twin_through_the_cli(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["benchmark", "run", "--env", TWIN, "--agents", "random", "uniform", "reinforce", "--seeds", "2",
                 "--budget", "8", "--jobs", "1", "--reps", "200", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "| reinforce |" in printed and "0 mismatches" in printed
    for name in ("config.yaml", "reference.json", "episodes.csv", "results.csv", "results.json", "results.md",
                 *bench.PLOTS.values()):
        assert (out / name).is_file(), name
    episodes = _rows(out / "episodes.csv")
    assert len(episodes) == 2 * 8 + 2 * 6 + 2 * 8  # uniform plays its 6 widths only
    assert set(episodes[0]) == set(bench.EPISODE_COLUMNS)
    results = json.loads((out / "results.json").read_text())
    assert results["reference"]["method"] == "exact" and results["reference"]["students"] == 1152
    assert 0 < results["zero"] < results["target"] < results["one"]  # best of 8 < best of 100 < the best
    for agent, v in results["agents"].items():
        assert v["seeds"] == [0, 1] and v["normalized_iqm"] is not None
        assert ("improvement_over_random" in v) == (agent != "random")
    assert results["validation"]["ok"] == 6 and results["validation"]["mismatch"] == 0
    assert "ddc benchmark run --env DDC-Bench-LeNet5-MNIST-v0 --agents random uniform reinforce --seeds 2" in (
        out / "results.md").read_text()


def test_normalized_score_against_a_hand_computation_on_a_toy_table(toy_table, tmp_path):
    path, param_ratio = toy_table

    def n2n(choice):  # the env's reward: N2N's (acc / acc_t) C (2 - C), C = 1 - params / params_t
        c = 1.0 - param_ratio[choice]
        return TOY_ACCURACY[choice] / 0.9 * c * (2.0 - c)

    rewards = sorted([(n2n("remove"), 0.5), (n2n(0.5), 0.25), (n2n(1.0), 0.25)])  # (reward, probability)
    budget = 3
    cdf = [0.0]
    for _, p in rewards:
        cdf.append(cdf[-1] + p)
    zero = sum(r * (cdf[i + 1] ** budget - cdf[i] ** budget) for i, (r, _) in enumerate(rewards))
    one = rewards[-1][0]

    results = bench.run_benchmark(_toy_config(path, budget=budget), tmp_path / "toy", progress=False)
    reference = json.loads((tmp_path / "toy" / "reference.json").read_text())
    assert reference["method"] == "exact" and reference["episodes"] == 3 and reference["students"] == 3
    assert sorted(p for _, _, p, _ in reference["outcomes"]) == [0.25, 0.25, 0.5]
    assert results["zero"] == pytest.approx(zero) and results["one"] == pytest.approx(one)
    random = results["agents"]["random"]
    assert random["normalized_score"] == pytest.approx([(b - zero) / (one - zero) for b in random["best_reward"]])


def test_validate_flags_a_forged_result_and_the_leaderboard_leaves_it_off(toy_table, tmp_path, capsys):
    path, _ = toy_table
    out = tmp_path / "toy"
    bench.run_benchmark(_toy_config(path), out, progress=False)
    rows = _rows(out / bench.RESULTS_CSV)
    assert main(["benchmark", "validate", str(out / bench.RESULTS_CSV)]) == 0
    forged = tmp_path / "forged.csv"
    rows[1]["reward"] = str(float(rows[1]["reward"]) + 0.01)  # a better reward than the student has
    with open(forged, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(["benchmark", "validate", str(forged)]) == 1
    printed = capsys.readouterr().out
    assert "mismatch random seed 1" in printed and "reward" in printed and "1 ok, 1 mismatches" in printed

    board = tmp_path / "LEADERBOARD.md"
    assert main(["benchmark", "leaderboard", str(board), "--from", str(out)]) == 0
    text = board.read_text()
    assert "# Leaderboard" in text and "![evaluations](toy/anytime_evaluations.png)" in text
    assert "## Overall:" in text and "Headroom: random search's expected best of 2 is" in text
    forged.replace(out / bench.RESULTS_CSV)  # a result that does not re-score is not on the board
    assert main(["benchmark", "leaderboard", str(board), "--from", str(out)]) == 0
    assert f'## {TWIN} (reward="n2n", table="{path}"): not on the board' in board.read_text()


def test_headroom_marks_saturated_tasks_and_the_overall_score_pools_the_others():
    from ddc_env.lab.benchmark.scores import SATURATED, headroom, overall

    assert headroom({"zero": 0.6349, "one": 0.6398}) >= SATURATED  # the LeNet-5 twin: saturated
    assert headroom({"zero": 0.39, "one": 0.47}) < SATURATED and headroom({"zero": None, "one": 1.0}) is None
    tasks = {t: {"agents": {"a": {"normalized_score": [0.1 * i + k for i in range(10)]},
                            "b": {"normalized_score": [0.0] * 10},
                            "c": {"normalized_score": [1.0] * 3}}} for t, k in (("x", 0.0), ("y", 0.5))}
    scores = overall(tasks, reps=200)
    assert set(scores) == {"a", "b", "c"}  # every agent run on every task with the same number of seeds
    assert scores["b"]["iqm"] == 0.0 and scores["a"]["iqm"] > scores["b"]["iqm"]
    assert scores["a"]["ci"][0] <= scores["a"]["iqm"] <= scores["a"]["ci"][1]
    tasks["y"]["agents"].pop("c")
    assert "c" not in overall(tasks, reps=200)


def test_the_flags_of_the_release_before_still_work_with_a_one_line_notice(toy_table, tmp_path, capsys):
    """``ddc benchmark --validate FILE``, ``--leaderboard FILE --from DIR`` and ``ddc benchmark --env/--resume ...``
    do what ``validate``, ``leaderboard`` and ``run`` do, after one line on stderr saying so."""
    path, _ = toy_table
    out = tmp_path / "toy"
    bench.run_benchmark(_toy_config(path), out, progress=False)
    results, board = str(out / bench.RESULTS_CSV), tmp_path / "LEADERBOARD.md"
    for old, new, action in ((["--validate", results], ["validate", results], "validate"),
                             (["--leaderboard", str(board), "--from", str(out)],
                              ["leaderboard", str(board), "--from", str(out)], "leaderboard"),
                             (["--resume", "--out", str(out), "--jobs", "1", "--quiet"],
                              ["run", "--resume", "--out", str(out), "--jobs", "1", "--quiet"], "run")):
        capsys.readouterr()
        assert main(["benchmark", *new]) == 0
        expected = capsys.readouterr()
        assert expected.err == ""
        assert main(["benchmark", *old]) == 0
        printed = capsys.readouterr()
        assert printed.out == expected.out
        [notice] = printed.err.splitlines()
        assert notice.startswith("ddc benchmark: ") and f"is deprecated; use 'ddc benchmark {action}" in notice
        assert "next release" in notice
    assert main(["benchmark"]) == 2 and "required: ACTION" in capsys.readouterr().err
    assert main(["benchmark", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "validate" in shown and "--validate" not in shown and "--env" not in shown  # the old flags are hidden


def test_a_killed_benchmark_resumes_without_redoing_finished_runs_and_extends(toy_table, tmp_path, monkeypatch, capsys):
    path, _ = toy_table
    config = _toy_config(path, budget=12, seeds=range(3))
    whole = bench.run_benchmark(config, tmp_path / "whole", progress=False)

    record = RunLog.record
    def killed(log: RunLog, reward: float, info: dict) -> None:  # the kill: during seed 1's 5th episode
        if log.run_dir.name == "random-seed1" and log.episodes == 4:
            raise KeyboardInterrupt
        record(log, reward, info)
    monkeypatch.setattr(RunLog, "record", killed)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        bench.run_benchmark(config, out, progress=False)
    monkeypatch.setattr(RunLog, "record", record)
    finished = out / "runs" / "random-seed0" / "summary.json"
    stamp = finished.stat().st_mtime_ns
    assert not (out / "runs" / "random-seed1" / "summary.json").exists()
    # resume takes the saved config: flags that differ from it are refused, naming them and the saved values
    assert main(["benchmark", "run", "--resume", "--out", str(out), "--env", "DDC-Bench-ResNet18-CIFAR10",
                 "--agents", "random", "uniform"]) == 2
    err = capsys.readouterr().err
    assert f"--env DDC-Bench-ResNet18-CIFAR10 differs from its {TWIN}" in err
    assert "--agents random uniform differs from its random" in err and len(err.strip().splitlines()) == 1
    # the original flags are accepted: resuming with the command that started it works
    assert main(["benchmark", "run", "--resume", "--out", str(out), "--env", TWIN, "--agents", "random", "--set",
                 f"table={path}", "reward=n2n", "--jobs", "1", "--quiet"]) == 0
    assert finished.stat().st_mtime_ns == stamp  # not redone
    assert _rows(out / bench.EPISODES_CSV) == _rows(tmp_path / "whole" / bench.EPISODES_CSV)
    resumed = json.loads((out / bench.RESULTS_JSON).read_text())
    assert resumed["agents"] == whole["agents"]

    assert main(["benchmark", "run", "--resume", "--out", str(out), "--budget", "8"]) == 2  # a budget only grows
    assert "can only extend its budget of 12" in capsys.readouterr().err
    assert main(["benchmark", "run", "--resume", "--out", str(out), "--budget", "16", "--jobs", "1", "--quiet"]) == 0
    extended = _rows(out / bench.EPISODES_CSV)
    assert len(extended) == 3 * 16
    assert [r for r in extended if int(r["episode"]) <= 12] == _rows(tmp_path / "whole" / bench.EPISODES_CSV)
    assert bench.read_benchmark_config(out).budget == 16


def test_bad_input_fails_before_any_folder_is_written(tmp_path, capsys):
    out = tmp_path / "never"
    for argv, message in ((["--agents", "random", "nope"], "unknown agent 'nope'"),
                          (["--agents", "random", "--set", "fidelity=nope"], "fidelity"),
                          (["--agents", "random", "--config", "reinforce=x.yaml"], "not in --agents"),
                          (["--agents", "random", "--budget", "0"], "budget must be"),
                          (["--agents", "random", "--backend", "ray"], "is a benchmark twin"),
                          (["--agents", "random", "--workers", "2"], "only apply to the ray backend")):
        assert main(["benchmark", "run", "--env", TWIN, *argv, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err and not out.exists()
    assert not os.path.exists(out)


def test_backend_options_reach_every_run_and_the_printed_command(tmp_path):
    backend = {"name": "ray", "address": "head:6379", "workers": 3}
    config = bench.make_benchmark_config("DDC-LeNet5-MNIST", ["random", "reinforce"], seeds=range(2), budget=2,
                                         env_kwargs={"dataset": "mnist_sample"}, backend=backend)
    for setup in config.agents:
        assert config.search_config(setup, 1).backend == {**backend, "cpus_per_worker": 1.0, "gpus_per_worker": 0.0}
    assert backend_flags(BackendOptions.from_dict(backend)) == ["--backend", "ray", "--address", "head:6379",
                                                                "--workers", "3"]
    assert backend_flags(BackendOptions()) == []
    with pytest.raises(ValueError, match="needs a running cluster"):
        bench.run_benchmark(dataclasses.replace(config, backend={"name": "ray"}), tmp_path / "never", jobs=2)
    assert not (tmp_path / "never").exists()


def test_a_budget_of_simulated_seconds_ends_every_run_before_it_is_spent(toy_table, tmp_path):
    path, _ = toy_table  # every student of the toy table stands for 2 simulated seconds, a repeated one for 0
    config = dataclasses.replace(_toy_config(path, budget=6, seeds=range(4)), budget_seconds=5.0)
    results = bench.run_benchmark(config, tmp_path / "seconds", progress=False)
    episodes = _rows(tmp_path / "seconds" / bench.EPISODES_CSV)
    for seed in range(4):
        run = [r for r in episodes if r["seed"] == str(seed)]
        assert 0 < float(run[-1]["total_simulated_seconds"]) <= 5.0 and len({r["spec_hash"] for r in run}) <= 2
    assert results["zero"] == pytest.approx(Reference.from_dict(json.loads(
        (tmp_path / "seconds" / "reference.json").read_text())).expected_best_within(6, 5.0))


def test_a_surrogate_twins_normalized_score_uses_the_best_known_student_stored_with_its_table(tmp_path):
    """Without a stored best-known student the surrogate twin's 1 is "the best any run found" (it moves with the
    runs); with one, it is that student's reward, the same in every benchmark."""
    import gymnasium as gym

    from ddc_env.lab.benchmark.reference import make_reference
    from ddc_env.tables import best_known_key
    from ddc_env.twins import make_bench_config

    table = copy.deepcopy(BenchTable.load("resnet18_cifar10"))  # the loaded table is cached: change a copy
    shipped = make_reference(gym.make("DDC-Bench-ResNet18-CIFAR10-v0"), samples=50)
    assert shipped.best_source.startswith("the best-known student (100,000 evaluations: ")  # bench/best_known.py
    table.meta.pop("best_known")
    table.save(tmp_path / "unknown.json.gz")
    env = gym.make("DDC-Bench-ResNet18-CIFAR10-v0", table=str(tmp_path / "unknown.json.gz"))
    assert make_reference(env, samples=50).best is None
    spec_hash = table.spec_hashes("zero")[3]
    tokens = table.task.codec.encode(table.student_choices(spec_hash))
    config = make_bench_config(table="resnet18_cifar10", backend="surrogate")
    table.meta["best_known"] = {best_known_key(config, table): {"choice_tokens": tokens, "spec_hash": spec_hash,
                                                                "evaluations": 10, "command": "a test"}}
    table.save(tmp_path / "known.json.gz")
    known = gym.make("DDC-Bench-ResNet18-CIFAR10-v0", table=str(tmp_path / "known.json.gz"))
    reference = make_reference(known, samples=50)
    expected = known.unwrapped.evaluate_choices(table.student_choices(spec_hash))["reward"]
    assert reference.best == pytest.approx(expected) and "best-known student (10 evaluations: a test)" in \
        reference.best_source


def test_a_transfer_benchmark_starts_every_run_from_a_pretrained_policy_and_the_board_compares(toy_table, tmp_path,
                                                                                                capsys):
    from ddc_env.lab.benchmark.leaderboard import render_transfer
    from ddc_env.lab.search import SearchConfig, run_search

    path, _ = toy_table
    kwargs = {"table": str(path), "reward": "n2n"}
    run_search(SearchConfig(env_id=TWIN, env_kwargs=kwargs, agent="reinforce", agent_kwargs={"rollouts": 2},
                            episodes=4, seed=7), tmp_path / "pretrain", progress=False)
    ckpt = tmp_path / "pretrain" / "agent.ckpt"
    with pytest.raises(ValueError, match="no such checkpoint"):
        bench.make_benchmark_config(TWIN, ["reinforce"], seeds=range(2), budget=4, env_kwargs=kwargs,
                                    init_from={"reinforce": tmp_path / "missing.ckpt"})
    for name, start in (("with", ["--init-from", f"reinforce={ckpt}"]), ("without", [])):
        assert main(["benchmark", "run", "--env", TWIN, "--agents", "reinforce", "random", "--seeds", "2",
                     "--budget", "4", "--set", f"table={path}", "reward=n2n", "--reps", "200", "--jobs", "1",
                     "--quiet", "--out", str(tmp_path / name), *start]) == 0
    saved = bench.read_benchmark_config(tmp_path / "with")
    assert {a.agent: a.init_from for a in saved.agents} == {"reinforce": str(ckpt.resolve()), "random": None}
    assert f"--init-from reinforce={ckpt}" in saved.command
    section = render_transfer([(tmp_path / "with", tmp_path / "without")])
    assert "| reinforce |" in section and str(ckpt.resolve()) in section and "| random | - |" in section
    board = tmp_path / "board.md"
    assert main(["benchmark", "leaderboard", str(board), "--from", str(tmp_path / "without"), "--transfer",
                 f"{tmp_path / 'with'}={tmp_path / 'without'}"]) == 0
    assert "## Policy transfer" in board.read_text()


def test_amcs_agents_act_in_their_own_mode_against_the_shared_reference_within_the_budget(tmp_path, capsys):
    """ddpg acts in action_mode=continuous while random stays sequential: one task, one exact reference (the masked
    random episode's), every student within the FLOPs budget, and the 1 is the best table student that meets it."""
    import gymnasium as gym

    from ddc_env.lab.benchmark.reference import make_reference

    out = tmp_path / "amc"
    code = main(["benchmark", "run", "--env", TWIN, "--agents", "random", "ddpg", "--seeds", "1", "--budget", "4",
                 "--set", "budget={flops: 0.2}", "--jobs", "1", "--reps", "200", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert "| ddpg | defaults (action_mode=continuous) |" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["reference"]["method"] == "exact" and set(results["agents"]) == {"random", "ddpg"}
    rows = _rows(out / bench.EPISODES_CSV)
    assert {r["agent"] for r in rows} == {"random", "ddpg"} and all(float(r["flop_ratio"]) <= 0.2 + 1e-9 for r in rows)
    assert {r["agent"]: json.loads(r["env_kwargs"]) for r in _rows(out / bench.RESULTS_CSV)} == {
        "random": {"budget": {"flops": 0.2}}, "ddpg": {"budget": {"flops": 0.2}, "action_mode": "continuous"}}
    assert results["validation"]["ok"] == 2
    free = make_reference(gym.make(TWIN), samples=200)
    assert results["one"] < free.best
    table = BenchTable.load("lenet5_mnist")
    twin = gym.make(TWIN, budget={"flops": 0.2}).unwrapped
    fits = [h for h in table.spec_hashes("fast") if twin.meets_budget(table.spec(h))]
    assert 0 < len(fits) < len(table.spec_hashes("fast"))
    assert all(table.spec(h).flops <= 0.2 * twin.task.teacher_spec.flops + 1e-6 for h in fits)
    # AMC's random search (uniform keep ratios) has no enumerable episodes: its reference is sampled
    continuous = make_reference(gym.make(TWIN, action_mode="continuous", budget={"flops": 0.2}), samples=200)
    assert continuous.method == "sampled" and continuous.best == results["one"]


def test_an_agent_sets_only_how_it_acts_and_one_acting_in_one_mode_refuses_another(tmp_path):
    config = bench.make_benchmark_config(TWIN, ["random", "ddpg", "dqn"], seeds=range(1), budget=2)
    acting = {setup.agent: setup.env_kwargs for setup in config.agents}
    assert acting == {"random": {}, "ddpg": {"action_mode": "continuous"}, "dqn": {"action_mode": "sequential"}}
    assert config.search_config(config.agents[1], 0).env_kwargs == {"action_mode": "continuous"}
    everyone = bench.make_benchmark_config(TWIN, ["random", "sac"], seeds=range(1), budget=2,
                                           env_kwargs={"action_mode": "continuous"})
    assert [setup.env_kwargs for setup in everyone.agents] == [{}, {}]
    with pytest.raises(ValueError, match="ddpg acts in action_mode='continuous', not 'one_shot': leave action_mode"):
        bench.make_benchmark_config(TWIN, ["ddpg"], seeds=range(1), budget=2, env_kwargs={"action_mode": "one_shot"})
    for text, message in [("env_kwargs: {reward: n2n}", r"unknown env_kwargs of agent 'td3'.*\['reward'\]"),
                          ("env_kwargs: {action_mode: sequential}", "td3 acts in action_mode='continuous', not "
                                                                    "'sequential'")]:
        path = tmp_path / "td3.yaml"
        path.write_text(f"agent: td3\n{text}\n")
        with pytest.raises(ValueError, match=message):
            bench.make_benchmark_config(TWIN, ["td3"], seeds=range(1), budget=2, configs={"td3": path})


def test_the_board_merges_benchmarks_of_one_task_into_one_section(toy_table, tmp_path):
    """Agents benchmarked at different times on one task sit in one section, scored as if run together; a benchmark
    of another budget is another section; merging different tasks is refused."""
    from ddc_env.lab.benchmark.leaderboard import render_leaderboard
    from ddc_env.lab.benchmark.scores import merge_results

    path, _ = toy_table
    kwargs = {"table": str(path), "reward": "n2n"}

    def run(name: str, agents: list[str], budget: int = 3) -> dict:
        config = bench.make_benchmark_config(TWIN, agents, seeds=range(3), budget=budget, bootstrap_reps=200,
                                             env_kwargs=kwargs)
        return bench.run_benchmark(config, tmp_path / name, progress=False)

    together, first, second = run("all", ["random", "uniform", "reinforce"]), run("a", ["random", "uniform"]), run(
        "b", ["random", "reinforce"])
    merged = merge_results([first, second])
    assert list(merged["agents"]) == ["random", "uniform", "reinforce"]
    for agent, v in together["agents"].items():
        assert merged["agents"][agent]["normalized_score"] == pytest.approx(v["normalized_score"])
        assert merged["agents"][agent]["normalized_iqm"]["iqm"] == pytest.approx(v["normalized_iqm"]["iqm"])
    assert merged["agents"]["reinforce"]["improvement_over_random"]["probability"] == pytest.approx(
        together["agents"]["reinforce"]["improvement_over_random"]["probability"])
    longer = run("longer", ["random"], budget=4)
    with pytest.raises(ValueError, match="budget is 3 in one and 4 in another"):
        merge_results([first, longer])
    board = render_leaderboard([tmp_path / "a", tmp_path / "b", tmp_path / "longer"], at=tmp_path)
    assert board.count(f"## {TWIN} (") == 2 and "3 seeds x 3 evaluations" in board and "x 4 evaluations" in board
    assert "of 2 tasks with headroom" in board
    section = board[board.index("x 3 evaluations"):board.index("x 4 evaluations")]
    assert all(f"| {agent} |" in section for agent in ("random", "uniform", "reinforce"))
    assert "![evaluations](a/anytime_evaluations.png)" in section and "![evaluations](b/anytime_evaluations.png)" in \
        section


def test_the_board_scores_a_surrogate_twin_against_the_best_known_student_stored_after_the_benchmark(tmp_path):
    """A benchmark run before its table had a best-known student is normalised on the board against the one the table
    stores now (the same 1 in every paper), its scores recomputed from the runs' best rewards."""
    import gymnasium as gym

    from ddc_env.lab.benchmark.leaderboard import render_leaderboard
    from ddc_env.lab.benchmark.scores import renormalized
    from ddc_env.tables import best_known_key
    from ddc_env.twins import make_bench_config

    table = copy.deepcopy(BenchTable.load("resnet18_cifar10"))
    table.meta.pop("best_known")
    path = table.save(tmp_path / "twin.json.gz")
    config = bench.make_benchmark_config("DDC-Bench-ResNet18-CIFAR10-v0", ["random"], seeds=range(2), budget=3,
                                         bootstrap_reps=200, reference_samples=50, env_kwargs={"table": str(path)})
    results = bench.run_benchmark(config, tmp_path / "bench", progress=False)
    assert results["reference"]["best_source"] == "the best reward any run found"
    spec_hash = table.spec_hashes("zero")[3]
    tokens = table.task.codec.encode(table.student_choices(spec_hash))
    key = best_known_key(make_bench_config(table=str(path), backend="surrogate"), table)
    table.meta["best_known"] = {key: {"choice_tokens": tokens, "spec_hash": spec_hash, "evaluations": 10,
                                      "command": "a test"}}
    table.save(path)  # rewritten: BenchTable.load reads the new version
    board = render_leaderboard([tmp_path / "bench"], at=tmp_path)
    assert "1 = the best-known student (10 evaluations: a test)" in board
    known = gym.make("DDC-Bench-ResNet18-CIFAR10-v0", table=str(path)).unwrapped
    one = known.evaluate_choices(table.student_choices(spec_hash))["reward"]
    assert f"**{one:.4f}**" in board
    expected = [(b - results["zero"]) / (one - results["zero"]) for b in results["agents"]["random"]["best_reward"]]
    assert renormalized(results, one, "x")["agents"]["random"]["normalized_score"] == pytest.approx(expected)
