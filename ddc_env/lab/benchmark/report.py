"""A benchmark's results as markdown: the headline (who beats random search, who meets the target) and the section
of ``results.md`` and the leaderboard."""
from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .config import PLOTS, RESULTS_CSV
from .scores import SATURATED, headroom

__all__ = ["headline", "render_section"]


def _fmt(estimate: Mapping[str, Any] | None, digits: int = 3) -> str:
    if estimate is None:
        return "-"
    low, high = estimate["ci"]
    return f"{estimate['iqm']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _probability(scores: Mapping[str, Any], key: str, flag: str) -> str:
    """A probability of improvement over random with its CI, in bold when the CI lies above 0.5."""
    poi = scores.get(key)
    if poi is None:
        return "-"
    text = f"{poi['probability']:.2f} [{poi['ci'][0]:.2f}, {poi['ci'][1]:.2f}]"
    return f"**{text}**" if scores.get(flag) else text


def _config_text(setup: Mapping[str, Any]) -> str:
    source = setup.get("source")
    acting = ", ".join(f"{k}={v}" for k, v in sorted((setup.get("env_kwargs") or {}).items()))
    return (f"`{Path(source).parent.name}/{Path(source).name}`" if source else "defaults") + (
        f" ({acting})" if acting else "")


def task_label(config: Mapping[str, Any]) -> str:
    """A benchmark's task as a heading: the env id, and its env arguments when it has any."""
    kwargs = ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in sorted(config["env_kwargs"].items()))
    return config["env_id"] + (f" ({kwargs})" if kwargs else "")


def task_key(config: Mapping[str, Any]) -> str:
    """What makes two benchmarks' runs comparable: task, seeds and budgets (benchmarks with the same key merge)."""
    return json.dumps([config.get(k) for k in ("env_id", "env_kwargs", "seeds", "budget", "budget_seconds",
                                                "target_k")], sort_keys=True)


def headline(results: Mapping[str, Any]) -> str:
    """Which agents beat random search (probability of a higher final best, CI above 0.5), the agent fastest to
    random search's expected best of ``target_k``, and which agents meet the target: there within a third of
    ``target_k`` evaluations (IQM over seeds) with a probability of getting there faster than random whose CI lies
    above 0.5."""
    agents = results["agents"]
    if results["zero"] is None or "random" not in agents:
        return "No normalized scores: the reference needs the random agent (live env) or a twin."
    winners = [a for a, v in agents.items() if v.get("beats_random")]
    k, limit = results["target_k"], math.floor(results["target_k"] / 3)
    timed = {a: v["evaluations_to_target_iqm"]["iqm"] for a, v in agents.items()
             if v["evaluations_to_target_iqm"] and a != "random"}
    beaten = (f"Higher final best than random search (probability of improvement, 95% CI above 0.5): "
              f"{', '.join(winners)}." if winners else "No agent ends with a higher best than random search with a "
                                                        "95% CI above 0.5.")
    if not timed:
        return beaten
    fastest = min(timed, key=timed.get)
    faster = agents[fastest]["faster_than_random"]
    met = [a for a in sorted(timed, key=timed.get) if timed[a] <= limit and agents[a]["reaches_target_faster"]]
    return (f"{beaten} Target (random search's expected best of {k}, {results['target']:.4f}, within {limit} "
            f"evaluations, IQM over seeds, faster than random with a 95% CI above 0.5): **{fastest}** gets there in "
            f"{_fmt(agents[fastest]['evaluations_to_target_iqm'], 1)} evaluations, random search in "
            f"{_fmt(agents['random']['evaluations_to_target_iqm'], 1)}; P({fastest} faster than random) = "
            f"{faster['probability']:.2f} [{faster['ci'][0]:.2f}, {faster['ci'][1]:.2f}]. "
            + (f"**Met** by {', '.join(met)}." if met else "**Not met** by any agent."))


def render_section(results: Mapping[str, Any], *, heading: str = "##", plots: str | Sequence[str] = "") -> str:
    """The markdown of one benchmark: command, configs, reference, the table and the plots (named; shown as images
    from the folder ``plots``, or from each of several folders of one task, when given)."""
    config = results["config"]
    reference = results.get("reference") or {}
    lines = [f"{heading} {task_label(config)}: {len(config['seeds'])} seeds x {config['budget']} evaluations"
             + (f" (or {config['budget_seconds']:g} simulated seconds)" if config.get("budget_seconds") else ""), "",
             f"```\n{config['command']}\n```", "", headline(results), ""]
    share = headroom(results)
    if share is not None:
        lines += [f"Headroom: random search's expected best of {config['budget']} is {share:.1%} of the best known"
                  + (" — **saturated** (at least 99%): this task does not count towards the overall score."
                     if share >= SATURATED else "."), ""]
    if results["zero"] is not None:
        lines += [f"- 0 = random search's expected best of {config['budget']} episodes: **{results['zero']:.4f}** "
                  f"({reference.get('method')}: {reference.get('students')} students from "
                  f"{reference.get('episodes')} random episodes); 1 = {reference.get('best_source')}: "
                  f"**{results['one']:.4f}**; target = random's expected best of {results['target_k']}: "
                  f"**{results['target']:.4f}**", ""]
    lines += ["| agent | config | best reward, IQM [95% CI] | normalized score, IQM [95% CI] | "
              "P(higher best than random) [95% CI] | evaluations to target, IQM [95% CI] (runs reaching it) | "
              "P(faster to target than random) [95% CI] | distinct students |", "|---|---|---|---|---|---|---|---|"]
    setups = {a["agent"]: a for a in config["agents"]}
    for agent, v in results["agents"].items():
        runs = len(v["seeds"])
        lines.append(f"| {agent} | {_config_text(setups[agent])} | {_fmt(v['best_reward_iqm'], 4)} | "
                     f"{_fmt(v['normalized_iqm'])} | {_probability(v, 'improvement_over_random', 'beats_random')} | "
                     f"{_fmt(v['evaluations_to_target_iqm'], 1)} ({v['reached_target']}/{runs}) | "
                     f"{_probability(v, 'faster_than_random', 'reaches_target_faster')} | "
                     f"{v['distinct_students']:.0f} |")
    validation = results.get("validation")
    if validation:
        lines += ["", f"Validated (`ddc benchmark validate {RESULTS_CSV}`): {validation['ok']} best students "
                      f"re-scored equal, {validation['mismatch']} mismatches, {validation['skipped']} skipped."]
    lines += ["", "Runs that never reach the target count as budget + 1 evaluations. Plots: "
              + ", ".join(f"`{name}`" for name in PLOTS.values()) + ".", ""]
    for folder in filter(None, [plots] if isinstance(plots, str) else plots):
        lines += [f"![{kind}]({folder}/{name})" for kind, name in PLOTS.items()] + [""]
    lines += ["<details><summary>hyperparameters</summary>", ""]
    for agent, setup in setups.items():
        lines.append(f"- {agent} ({_config_text(setup)}): `{json.dumps(setup['agent_kwargs'], sort_keys=True)}`")
    lines += ["", "</details>", ""]
    return "\n".join(lines)

