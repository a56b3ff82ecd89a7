"""Where does the search earn its keep? For a task and a latency budget: an agent searches the live env (AMC's budget
clipping: every student it meets has a model latency within the budget; reward: validation accuracy), then the
searched student, the uniform-width student, the torch-pruning reference and (with ``--amc``) the AMC agent's student
all get the same final KD (at least 5 epochs over the whole training split, inherited from the teacher) and are
measured for real: test accuracy, and batch-1 CPU latency timed in interleaved rounds with the teacher.

The search runs the agent with its configuration tuned on the ResNet-18 twin (``configs/bench/resnet18_cifar10/``)
unless ``--agent-kwargs`` says otherwise, over the task's decisions with ``--widths`` (default the N2N widths; a finer
grid lets tight budgets reach allocations between 0.25 and 0.5). Every row also gets its validation accuracy at the
search's fidelity ("search val"): when a reference scores higher there than the searched student, the search (its
space or agent), not its fidelity, lost.

The references are matched to each searched student's *measured* latency (the latency model can be far off on a CPU):
the widest uniform width, and the torch-pruning FLOPs ratio (one global group-norm step, then the final KD), whose
measured latency is at most the searched student's, each candidate timed in the same interleaved rounds as the
searched student. At the end, besides each row's own reading paired with the teacher, all rows are timed together
in one run of interleaved rounds (one moment of the machine), cold (each round right after the other rows ran) and
warm (one untimed call first): small networks read up to ~10% apart between the two (``bench/latency_conditions.py``).
``--remeasure`` only times the rows of finished seeds together again; ``--rematch`` matches the references of seeds
finished with another matching again (their search and searched student stand); ``--bracket 1.1`` adds
torch-pruning given up to 1.1 times the searched student's latency (a searched student that also beats that
reference does not win on the timing's noise).

    .venv/bin/python bench/earn_its_keep.py --task vgg16 --latency 0.3 --seeds 0 1 2 --agent evolution --episodes 60
    .venv/bin/python bench/earn_its_keep.py --task resnet18 --latency 0.3 --seeds 0 --agent none   # references only
    .venv/bin/python bench/earn_its_keep.py --task vgg16 --latency 0.15 --seeds 0 --episodes 40 --label fine \
        --widths 0.125 0.1875 0.25 0.3125 0.375 0.4375 0.5 0.625 0.75 0.875 1

Everything is resumable: the search's evaluations go through a results store (a killed search replays them as cache
hits), trained final students are saved per spec, and finished seeds stay in
``--out/<task>-<budget>[-<label>]/results.json`` (a rerun with another search setup in the same folder is refused).
Prints the CPU and precision it ran with.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import ddc_env  # noqa: F401  (registers the ids)
from ddc_env.agents import get_agent
from ddc_env.arch import N2N_WIDTHS, NetSpec, build, channel_counts, uniform_choices, with_channels
from ddc_env.baselines.common import Context
from ddc_env.baselines.library_pruning import SpacePruner, make_importance
from ddc_env.baselines.library_pruning import run as torch_prune
from ddc_env.lab.config import read_yaml
from ddc_env.lab.report import load_model, measure_test_accuracy
from ddc_env.lab.runs import SearchLog
from ddc_env.latency import LatencyProtocol, measure_interleaved, measure_paired, timing_copy
from ddc_env.paths import atomic_write_text
from ddc_env.scoring import CachedScorer, LiveScorer
from ddc_env.store import ResultsStore
from ddc_env.task import Task, TaskConfig, check_widths, load_task
from ddc_env.train import compute_signature

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TASKS = {  # live id, teacher checkpoint, dataset (the CIFAR-10 JPEG copy)
    "vgg16": ("DDC-VGG16-CIFAR10", SHARED / "teachers" / "vgg16_cifar10jpeg.pt"),
    "resnet18": ("DDC-ResNet18-CIFAR10", SHARED / "teachers" / "resnet18_cifar10jpeg.pt"),
    "mobilenet_v2": ("DDC-MobileNetV2-CIFAR10", ROOT / "bench" / "teachers" / "mobilenet_v2_cifar10jpeg.pt"),
}
DATA = SHARED / "data" / "cifar10_jpeg"
FINAL = {"name": "standard", "epochs": 5}
CONTINUOUS = ("ddpg", "td3", "sac")
# how the references are matched: timed in the same interleaved rounds as the searched student (a ratio to the
# teacher read at another moment of the machine can differ by more than the gaps being compared)
MATCHING = "interleaved with the searched student"
BRACKET = "torch-pruning at "  # the row of --bracket: "torch-pruning at 1.1x its latency (FLOPs ...)"


TUNED = ROOT / "configs" / "bench" / "resnet18_cifar10"  # the board's tuned configs (the closest task tuned)


def env_kwargs(task: str, latency: float, fidelity: str, store: Path, agent: str, widths: tuple[float, ...]
               ) -> dict[str, Any]:
    return {"teacher": str(TASKS[task][1]), "dataset": "cifar10_jpeg", "data_dir": str(DATA), "fidelity": fidelity,
            "width_choices": widths, "latency": "model", "budget": {"latency": latency},
            "reward": {"name": "amc", "objective": "error"}, "store": str(store),
            "action_mode": "continuous" if agent in CONTINUOUS else "sequential"}


def tuned_kwargs(agent: str) -> dict[str, Any]:
    """The agent's hyperparameters tuned on the ResNet-18 twin, or {} (its defaults) when none were."""
    path = TUNED / f"{agent}.yaml"
    return dict(read_yaml(path).get("agent_kwargs") or {}) if path.exists() else {}


def search(task: str, latency: float, seed: int, config: dict[str, Any], store: Path) -> dict[str, Any]:
    """The most accurate student the agent finds within the budget (its terminal info)."""
    log = SearchLog(None, config["episodes"], progress=False)
    entry = get_agent(config["agent"])
    kwargs = env_kwargs(task, latency, config["fidelity"], store, config["agent"], tuple(config["widths"]))
    entry.runner()(lambda: gym.make(TASKS[task][0], **kwargs), episodes=config["episodes"], log=log, seed=seed,
                   **entry.hyperparams(config["agent_kwargs"]))
    return log.best_info


def paired_ratio(net: torch.nn.Module, anchor: torch.nn.Module, task: Task, rounds: int) -> float:
    """Batch-1 latency ratio of ``net`` to ``anchor`` (a timing copy), timed in interleaved rounds."""
    return measure_paired(timing_copy(net), anchor, task.input_shape, LatencyProtocol(rounds=rounds)).ratio


def widest_uniform(task: Task, anchor: torch.nn.Module, ratio: float, rounds: int) -> tuple[float, NetSpec]:
    """The widest uniform width (steps of 0.01) whose student's measured latency is at most ``ratio`` times the
    ``anchor``'s, timed in the same rounds (latency does not depend on the weights: randomly initialised students
    are timed)."""
    low, high = 5, 100
    while low < high:  # bisection on the width in hundredths: latency grows with width
        mid = (low + high + 1) // 2
        spec = task.student_spec(uniform_choices(task.teacher_spec, mid / 100))
        if paired_ratio(build(spec).eval(), anchor, task, rounds) <= ratio:
            low = mid
        else:
            high = mid - 1
    return low / 100, task.student_spec(uniform_choices(task.teacher_spec, low / 100))


def pruning_plans(task: Task, teacher: torch.nn.Module) -> Callable[[float], NetSpec]:
    """The student of the one-step global group-norm torch-pruning plan of the trained ``teacher`` at a FLOPs ratio
    (the plan the baseline then applies)."""
    spec = task.student_spec({})
    pruner = SpacePruner(teacher, spec, make_importance("group_norm"), teacher_counts=channel_counts(spec),
                         round_to=task.channel_round, min_channels=task.min_channels)

    def plan_at(flops_ratio: float) -> NetSpec:
        _, plan = pruner.reach(spec.flops * flops_ratio, lambda counts: with_channels(pruner.spec, counts).flops,
                               float, pruner.global_limit)
        return with_channels(pruner.spec, plan.counts)
    return plan_at


def pruning_ratio_at(plan_at: Callable[[float], NetSpec], anchor: torch.nn.Module, ratio: float, task: Task,
                     rounds: int) -> float:
    """The FLOPs ratio whose torch-pruning plan (:func:`pruning_plans`) has a measured latency at most ``ratio``
    times the ``anchor``'s (bisection; the planned students are timed randomly initialised)."""
    low, high = 0.02, 1.0
    for _ in range(10):
        mid = (low + high) / 2
        if paired_ratio(build(plan_at(mid)).eval(), anchor, task, rounds) <= ratio:
            low = mid
        else:
            high = mid
    return low


def recorded_spec(row: dict[str, Any], entry: dict[str, Any], task: Task,
                  plan_at: Callable[[float], NetSpec]) -> NetSpec:
    """A finished row's student: its recorded spec, or (rows written before specs were recorded) rebuilt from its
    method (the searched student's choice tokens, the uniform width, torch-pruning's FLOPs ratio) and checked against
    its spec hash."""
    method = row["method"]
    if "spec" in row:
        return NetSpec.from_dict(row["spec"])
    if method == "teacher":
        candidates = [task.teacher_spec]
    elif method.startswith("searched"):
        candidates = [task.student_spec(task.codec.decode(entry["search"]["choice_tokens"]))]
    elif method.startswith("uniform "):
        candidates = [task.student_spec(uniform_choices(task.teacher_spec, float(method.split()[1])))]
    elif method.startswith("torch-pruning (FLOPs "):  # the name shows 3 decimals of the 4 the ratio was rounded to
        shown = float(method.removeprefix("torch-pruning (FLOPs ").rstrip(")"))
        candidates = (plan_at(round(shown + k / 10_000, 4)) for k in range(-5, 6))
    else:
        candidates = []
    spec = next((c for c in candidates if c.hash() == row["spec_hash"]), None)
    if spec is None:
        sys.exit(f"cannot rebuild the student of row {method!r} (spec hash {row['spec_hash']})")
    return spec


def joint_latency(specs: dict[str, NetSpec], input_shape: tuple[int, ...], rounds: int) -> dict[str, Any]:
    """Every row's batch-1 latency ratio to the teacher's, all timed in the same interleaved rounds (one moment of
    the machine; randomly initialised nets: latency does not depend on the weights), cold (each round right after
    the other rows ran) and warm (one untimed call first: as a model serving requests runs), with the CPU."""
    nets = [timing_copy(build(spec)) for spec in specs.values()]
    teacher = list(specs).index("teacher")
    out: dict[str, Any] = {"rounds": rounds, "machine": compute_signature("cpu")}
    for key, warm_calls in (("ratios", 0), ("warm_ratios", 1)):
        readings = measure_interleaved(nets, input_shape, LatencyProtocol(rounds=rounds), warm_calls)
        out[key] = {name: ms / readings[teacher][0] for name, (ms, _) in zip(specs, readings)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="vgg16")
    parser.add_argument("--latency", type=float, default=0.3, help="the model-latency budget of the search")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--agent", default="evolution", help="the search agent, or none: only the references, "
                                                                  "matched to the budget itself")
    parser.add_argument("--episodes", type=int, default=60)
    parser.add_argument("--fidelity", default="fast", help="the search's fidelity")
    parser.add_argument("--amc", default=None, help="also the student of this continuous agent (ddpg, td3, sac)")
    parser.add_argument("--rounds", type=int, default=61, help="interleaved timing rounds per model (matching, each "
                        "row's reading paired with the teacher, all rows timed together)")
    parser.add_argument("--final", type=json.loads, default=FINAL, help=f"the final KD (default {json.dumps(FINAL)})")
    parser.add_argument("--agent-kwargs", type=json.loads, default=None,
                        help="the agent's hyperparameters as JSON (default: tuned on the ResNet-18 twin)")
    parser.add_argument("--widths", type=float, nargs="+", default=list(N2N_WIDTHS),
                        help="the search's width choices (increasing, in (0, 1], with 1)")
    parser.add_argument("--label", default="", help="appended to the run folder's name (one folder per search setup)")
    parser.add_argument("--out", type=Path, default=Path("runs/earn_its_keep"))
    parser.add_argument("--bracket", type=float, default=None, help="also torch-pruning matched to at most this many "
                        "times the searched student's latency (> 1: a reference given more time, so a win does not "
                        "rest on the timing's noise; added to finished seeds too)")
    parser.add_argument("--rematch", action="store_true", help="match the references of finished seeds whose "
                        "references were matched another way again (their search and searched student stand)")
    parser.add_argument("--remeasure", action="store_true", help="only time every row of the finished seeds again, "
                        "all in the same interleaved rounds (one moment of the machine), into the results")
    args = parser.parse_args()
    try:
        config = {"agent": args.agent, "episodes": args.episodes, "fidelity": args.fidelity,
                  "widths": list(check_widths(args.widths)),
                  "agent_kwargs": {} if args.agent == "none" else
                  (tuned_kwargs(args.agent) if args.agent_kwargs is None else args.agent_kwargs)}
        if args.agent != "none":
            get_agent(args.agent).hyperparams(config["agent_kwargs"])  # unknown names or bad values raise
        if args.rounds < 1:
            raise ValueError(f"--rounds must be at least 1, got {args.rounds}")
        if args.bracket is not None and not 1.0 < args.bracket < 10.0:
            raise ValueError(f"--bracket must be a latency factor in (1, 10), got {args.bracket}")
    except ValueError as e:
        parser.error(str(e))
    out = args.out / "-".join(filter(None, [args.task, f"{args.latency:g}", args.label]))
    path = out / "results.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"seeds": {}}
    if results["seeds"] and not args.remeasure and results.get("search") != config:  # timing searches nothing
        sys.exit(f"{path} holds seeds searched with {results.get('search', 'another setup')}, not {config}: "
                 f"pass another --label")
    out.mkdir(parents=True, exist_ok=True)
    print(f"machine: {compute_signature('cpu')}", flush=True)
    task = load_task(TaskConfig(model=args.task, teacher=str(TASKS[args.task][1]), dataset="cifar10_jpeg",
                                data_dir=str(DATA)))
    scorer = LiveScorer(task, args.final, latency="model", device="cpu")
    distiller = scorer.distiller
    teacher_cpu = timing_copy(distiller.teacher)
    command = " ".join([".venv/bin/python bench/earn_its_keep.py", *sys.argv[1:]])
    plan_at = pruning_plans(task, teacher_cpu)
    if args.remeasure:
        for seed in args.seeds:
            entry = results["seeds"].get(str(seed))
            if entry is None:
                sys.exit(f"seed {seed} is not finished in {path}: nothing to time again")
            specs = {row["method"]: recorded_spec(row, entry, task, plan_at) for row in entry["rows"]}
            entry["joint_latency"] = {**joint_latency(specs, task.input_shape, args.rounds), "command": command}
            print(f"seed {seed}: {json.dumps(entry['joint_latency']['ratios'])}", flush=True)
        atomic_write_text(path, json.dumps(results, indent=1, default=str))
        print(table(results))
        return
    # the search's store: the searched student's record (and a reference met in an earlier seed) is a cache hit
    search_scorer = CachedScorer(LiveScorer(task, args.fidelity, latency="model", device="cpu"),
                                 ResultsStore(out / "search.sqlite"), method="earn_its_keep")
    results.update(command=command, final=args.final, machine=compute_signature("cpu"), search=config)

    def final_kd(spec: NetSpec) -> torch.nn.Module:
        """The final KD of ``spec`` (saved, so a later seed or run reuses it: training is deterministic)."""
        weights = out / "final" / f"{spec.hash()}.pt"
        if weights.exists():
            net = build(spec)
            net.load_state_dict(torch.load(weights, weights_only=True))
            return net.eval()
        start = time.perf_counter()
        net = distiller.train_student(spec)[0].eval()
        weights.parent.mkdir(exist_ok=True)
        torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()}, weights)
        print(f"final KD of {spec.hash()} (params {spec.params / task.teacher_spec.params:.3f}): "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        return net

    def pruned(flops_ratio: float) -> tuple[torch.nn.Module, NetSpec]:
        """torch-pruning at ``flops_ratio`` in one global group-norm step, then the final KD (saved for a rerun)."""
        run_dir = out / f"torch_pruning_{flops_ratio:.4f}"
        files = run_dir / "model.json"
        if not files.exists():
            with ResultsStore(run_dir / "results.sqlite") as store:
                ctx = Context(task, scorer, store, run_dir / "models", "baseline:torch_pruning", progress=False)
                torch_prune(ctx, importance="group_norm", allocation="global", target="flops", ratio=flops_ratio,
                            steps=1, epochs=None, final_epochs=0, round_to=None, min_channels=None,
                            ranking_images=1024, sensitivity_ratios=(0.2,), max_drop=0.02)
            atomic_write_text(files, json.dumps(ctx.results[-1]["model"]))
        return load_model(run_dir, json.loads(files.read_text()))

    matching = f"{MATCHING if args.agent != 'none' else 'at the budget, with the teacher'}, {args.rounds} rounds"
    for seed in args.seeds:
        entry = results["seeds"].get(str(seed))
        rematch = entry is not None and args.rematch and entry.get("matching") != matching
        add_bracket = (entry is not None and args.bracket is not None and entry.get("matching") == matching and
                       any(r["method"].startswith("searched") for r in entry["rows"]) and
                       not any(r["method"].startswith(BRACKET) for r in entry["rows"]))
        if entry is not None and not (rematch or add_bracket):
            print(f"seed {seed}: done in {path}" + ("" if entry.get("matching") == matching else
                  f" (its references were matched {entry.get('matching', 'by ratios to the teacher')}: --rematch "
                  f"matches them again)"), flush=True)
            continue
        if entry is not None:  # the search and the searched student's row stand (and, adding a bracket, every row)
            rows = [r for r in entry["rows"] if not rematch or r["method"] == "teacher" or
                    r["method"].startswith("searched")]
            specs = {r["method"]: recorded_spec(r, entry, task, plan_at) for r in rows}
            best, target, pending = entry["search"], entry["target_latency_ratio"], {}
            searched = next((specs[r["method"]] for r in rows if r["method"].startswith("searched")), None)
        else:
            rows, specs, best, target, searched = [], {}, {}, args.latency, None
            pending: dict[str, tuple[torch.nn.Module, NetSpec]] = {"teacher": (distiller.teacher, task.teacher_spec)}
            if args.agent != "none":
                best = search(args.task, args.latency, seed, config, out / "search.sqlite")
                searched = NetSpec.from_dict(best["spec"])
                searched_net = final_kd(searched)
                target = paired_ratio(searched_net, teacher_cpu, task, args.rounds)
                pending[f"searched ({args.agent}, seed {seed})"] = (searched_net, searched)
        # the references: at most the searched student's latency, timed in the same rounds as it (without a search:
        # the budget, as a ratio to the teacher)
        anchor, ratio = (timing_copy(build(searched)), 1.0) if searched is not None else (teacher_cpu, args.latency)
        if not add_bracket:
            width, uniform = widest_uniform(task, anchor, ratio, args.rounds)
            flops_ratio = round(pruning_ratio_at(plan_at, anchor, ratio, task, args.rounds), 4)
            pending[f"uniform {width:g}"] = (final_kd(uniform), uniform)
            pending[f"torch-pruning (FLOPs {flops_ratio:.3f})"] = pruned(flops_ratio)
            if args.amc:
                amc_config = {**config, "agent": args.amc, "agent_kwargs": tuned_kwargs(args.amc)}
                amc = NetSpec.from_dict(search(args.task, args.latency, seed, amc_config,
                                               out / "search.sqlite")["spec"])
                pending[f"AMC ({args.amc}, seed {seed})"] = (final_kd(amc), amc)
        if args.bracket is not None and searched is not None:  # torch-pruning given more time than the searched
            bracket_ratio = round(pruning_ratio_at(plan_at, anchor, args.bracket, task, args.rounds), 4)
            pending[f"{BRACKET}{args.bracket:g}x its latency (FLOPs {bracket_ratio:.3f})"] = pruned(bracket_ratio)
        for name, (net, spec) in pending.items():
            rows.append({"method": name, "search_val_acc": None if name == "teacher" else
                         search_scorer.score(spec)["val_acc"],
                         "val_acc": distiller.accuracy(net, teacher=name == "teacher"),
                         "test_acc": measure_test_accuracy(distiller, net, teacher=name == "teacher"),
                         "param_ratio": spec.params / task.teacher_spec.params,
                         "flop_ratio": spec.flops / task.teacher_spec.flops,
                         "latency_ratio": paired_ratio(net, teacher_cpu, task, args.rounds), "spec_hash": spec.hash(),
                         "spec": spec.to_dict()})
            specs[name] = spec
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "spec"}), flush=True)
        joint = joint_latency({r["method"]: specs[r["method"]] for r in rows}, task.input_shape, args.rounds)
        results["seeds"][str(seed)] = {"search": {k: best[k] for k in ("val_acc", "latency_ratio", "choice_tokens")
                                                  if k in best}, "target_latency_ratio": target, "rows": rows,
                                       "matching": matching, "joint_latency": {**joint, "command": command}}
        atomic_write_text(path, json.dumps(results, indent=1, default=str))
    print(table(results))


def table(results: dict[str, Any]) -> str:
    lines = ["| seed | method | search val | val acc | test acc | params ratio | FLOPs ratio | measured latency ratio "
             "(batch 1) | all rows timed together, cold | warm |", "|---|---|---|---|---|---|---|---|---|---|"]
    for seed, entry in results["seeds"].items():
        joint = entry.get("joint_latency", {})
        for r in entry["rows"]:
            search_val = "" if r.get("search_val_acc") is None else f"{r['search_val_acc']:.4f}"
            together = [f"{joint[key][r['method']]:.3f}" if r["method"] in joint.get(key, {}) else ""
                        for key in ("ratios", "warm_ratios")]
            lines.append(f"| {seed} | {r['method']} | {search_val} | {r['val_acc']:.4f} | {r['test_acc']:.4f} | "
                         f"{r['param_ratio']:.3f} | {r['flop_ratio']:.3f} | {r['latency_ratio']:.3f} | "
                         f"{' | '.join(together)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
