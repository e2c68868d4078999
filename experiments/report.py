"""Reports: the numbers of an experiment (or one run) as tables, Markdown and plots.

Everything here reads the event log; nothing is written to the database. The
test-split rows come from the runs' ``prompt.tested`` events. What the plots
draw besides (the candidates' metrics, test answers replayed from the LLM cache,
never from a model) is read by :mod:`.plot_data` and drawn by :mod:`.plots`, so
a report costs no model calls.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .._text import printable
from ..metric_specs import heading, lower_is_better
from ..models.pricing import SPEND_COLUMNS, spend_rows
from ..stores import EventLog
from ..stores.events import tested_roles
from ..stores.projection import RunState
from .grid import REPORT_LABELS, Experiment, cell_states
from .plot_data import candidate_points, replay_test_answers
from .report_model import COLUMNS, ArmSample, Group, Report, RunRef, Stat, columns_of

# -- building --------------------------------------------------------------------------------


def _train_calls(state: RunState) -> int:
    return state.scorer_calls.get("source", 0) + state.scorer_calls.get("target", 0)


def _sample(arm: str, seed: int, state: RunState, role: str) -> ArmSample | None:
    row = state.tested.get(role)
    if row is None:
        return None
    values: dict[str, float | None] = {**row.metrics, "objective": row.objective}
    return ArmSample(arm, seed, state.run_id, values, row.n_examples, row.text)


def build_report(log: EventLog, *, experiment: Experiment | None = None, run_id: str | None = None) -> Report:
    """Collect the test-split results of an experiment's cells, or of one run.

    Give exactly one of ``experiment`` and ``run_id``.
    """
    if (experiment is None) == (run_id is None):
        raise ValueError("give exactly one of experiment and run_id")
    if run_id is not None:
        report = _run_report(log, log.resolve(run_id))
    else:
        assert experiment is not None
        report = _experiment_report(log, experiment)
    report.spend = log.transcripts.spend([r.run_id for g in report.groups for r in g.runs])
    return report


def _experiment_report(log: EventLog, experiment: Experiment) -> Report:
    groups: dict[str, Group] = {}
    complete = True
    for cell in experiment.cells:
        title = f"{cell.model} · {' + '.join(cell.sources)} → {cell.target} · budget {cell.budget} scorer calls"
        groups[cell.key] = Group(title, cell.model, cell.sources, cell.target, cell.budget,
                                 ["original", "target_only", "transfer"])
    originals: set[tuple[str, int]] = set()
    for cell_run, state in cell_states(log, experiment):
        group = groups[cell_run.cell.key]
        if state is None:
            complete = False
            continue
        group.runs.append(RunRef(cell_run.arm, cell_run.seed, state.run_id, state.status, _train_calls(state)))
        if state.status != "completed":
            complete = False
        sample = _sample(cell_run.arm, cell_run.seed, state, "best_target")
        if sample is not None:
            group.samples.append(sample)
        # The original prompt's row: identical in both arms of a seed (same
        # prompt, same test examples); take the first one found.
        if (cell_run.cell.key, cell_run.seed) not in originals:
            original = _sample("original", cell_run.seed, state, "original")
            if original is not None:
                group.samples.append(original)
                originals.add((cell_run.cell.key, cell_run.seed))
    notes = []
    if not complete:
        notes.append("The experiment is not complete: rows cover the finished runs only.")
    name = experiment.name
    return Report("experiment", name, _slug(name), list(groups.values()), experiment.config.description,
                  experiment.experiment_id, complete, notes)


def _run_report(log: EventLog, run_id: str) -> Report:
    state = log.state(run_id)
    config = state.config
    assert config is not None  # a run's history starts with run.created
    seed = config.seed
    sources = tuple(state.source_tasks)
    target = state.target_task or config.target_task
    model = config.scorer
    title = f"{model} · {' + '.join(sources) or '(no source stage)'} → {target}"
    roles: list[str] = list(tested_roles(config.transfer))
    group = Group(title, model, sources, target, config.scorer_budget, roles)
    for role in roles:
        sample = _sample(role, seed, state, role)
        if sample is not None:
            group.samples.append(sample)
    group.runs.append(RunRef("transfer" if config.transfer else "target_only", seed, run_id,
                             state.status, _train_calls(state)))
    notes = []
    if state.status != "completed":
        notes.append(f"Run {run_id} is {state.status}: the table holds only what it has tested so far.")
    notes.append("One run, one seed: there is no spread; differences on few test examples are noisy.")
    return Report("run", state.name or run_id, _slug(run_id), [group], None, run_id, state.status == "completed", notes)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "report"


# -- numbers as text -------------------------------------------------------------------------


def fmt_stat(stat: Stat, *, signed: bool = False) -> str:
    """``0.412 ± 0.031`` (``n/a`` when undefined; no ± for one value)."""
    if stat.mean is None:
        return "n/a"
    mean = round(stat.mean, 3) + 0.0  # no "-0.000"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    if stat.sd is not None:
        text += f" ± {stat.sd:.3f}"
    return text


def table_rows(group: Group, columns: Sequence[str] = COLUMNS) -> tuple[list[list[str]], list[list[str]]]:
    """The two tables of a group as text: (arm values, changes against the original prompt), one cell per column.

    ``columns`` defaults to the classic seven and the objective; a report passes its own (:func:`columns_of`).
    A column the group has no values for reads ``n/a``.
    """
    none = Stat(None, None, 0)
    values = []
    for arm in group.arms:
        if not group.arm_samples(arm):
            continue
        summary = group.summary(arm)
        values.append([REPORT_LABELS.get(arm, arm), str(len(group.arm_samples(arm)))]
                      + [fmt_stat(summary.get(c, none)) for c in columns])
    changes = []
    for arm in group.arms[1:]:
        if not group.arm_samples(arm) or not group.arm_samples("original"):
            continue
        change = group.change(arm)
        changes.append([REPORT_LABELS.get(arm, arm) + " − original", str(change["objective"].n)]
                       + [fmt_stat(change.get(c, none), signed=True) for c in columns])
    if "transfer" in group.arms and group.arm_samples("transfer") and group.arm_samples("target_only"):
        change = group.change("transfer", base="target_only")
        changes.append(["Transfer-Prompting − target-only", str(change["objective"].n)]
                       + [fmt_stat(change.get(c, none), signed=True) for c in columns])
    return values, changes


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(report: Report, *, images: dict[int, list[tuple[str, str]]] | None = None,
                    database: str | None = None) -> str:
    """The report as Markdown. ``images[i]`` lists (caption, file name) for group ``i``."""
    images = images or {}
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# {'Experiment' if report.kind == 'experiment' else 'Run'} report: {report.name}", ""]
    if report.description:
        out += [report.description.strip(), ""]
    meta = [f"{'experiment' if report.kind == 'experiment' else 'run'} id `{report.ref_id}`", f"generated {stamp}"]
    if database:
        meta.append(f"database `{database}`")
    out += [", ".join(meta) + ".", ""]
    columns = columns_of(report.groups)
    lower = lower_is_better(columns)
    direction = f"Higher is better except for {' and '.join(lower)}" if lower else "Higher is better in every column"
    out += [
        "Values are on the held-out test split of the target task: mean ± sample standard deviation over "
        f"seeds (no ± with one seed). {direction}. The change rows are the "
        "mean ± sd of the per-seed paired difference; `n` counts seeds.",
        "",
    ]
    for note in report.notes:
        out += [f"> {note}", ""]
    header = ["arm", "n", *map(heading, columns)]
    for i, group in enumerate(report.groups):
        out += [f"## {group.title}", ""]
        seeds = ", ".join(str(s) for s in group.seeds) or "-"
        out += [f"Test examples per seed: {group.n_test()}; seeds: {seeds}.", ""]
        values, changes = table_rows(group, columns)
        if not values:
            out += ["No finished runs yet.", ""]
            continue
        out += [_md_table(header, values), ""]
        if changes:
            out += ["Change against the original prompt (and Transfer-Prompting against target-only):", ""]
            out += [_md_table(["comparison", "n", *header[2:]], changes), ""]
        for caption, name in images.get(i, []):
            out += [f"![{caption}]({name})", ""]
        best = [s for s in group.samples if s.arm not in ("original",) and s.text]
        if best:
            out += ["<details><summary>Prompts tested</summary>", ""]
            for s in sorted(best, key=lambda s: (group.arms.index(s.arm) if s.arm in group.arms else 9, s.seed)):
                text = " ".join(s.text.split()).replace("<", "&lt;")  # inside <details>: no stray tags
                out += [f"- {REPORT_LABELS.get(s.arm, s.arm)}, seed {s.seed} (`{s.run_id}`): {text}"]
            out += ["", "</details>", ""]
    out += ["## Runs", ""]
    rows = []
    for group in report.groups:
        for r in group.runs:
            budget = str(group.budget) if group.budget is not None else "-"
            rows.append([group.title.split(" · budget")[0], REPORT_LABELS.get(r.arm, r.arm), str(r.seed), f"`{r.run_id}`",
                         r.status, str(r.train_calls), budget])
    out += [_md_table(["cell", "arm", "seed", "run", "status", "train scorer calls", "budget"], rows), ""]
    out += ["## Spend", ""]
    if not report.spend:
        out += ["No call of these runs was answered by a model: every answer came from the cache.", ""]
    else:
        out += ["Calls answered by a model (cache hits cost nothing), per agent and stage; USD from the price "
                "table or the run's `prices` (`-`: no price known for that model).", ""]
        out += [_md_table(list(SPEND_COLUMNS), [list(r) for r in spend_rows(report.spend)]), ""]
    return printable("\n".join(out))  # prompts are model text: no control characters in the file


def report_json(report: Report) -> dict[str, Any]:
    """The report's numbers as plain data (for ``--json``)."""
    groups = []
    for group in report.groups:
        groups.append(
            {
                "title": group.title,
                "model": group.model,
                "sources": list(group.sources),
                "target": group.target,
                "budget": group.budget,
                "seeds": group.seeds,
                "arms": {
                    arm: {c: {"mean": st.mean, "sd": st.sd, "n": st.n} for c, st in group.summary(arm).items()}
                    for arm in group.arms if group.arm_samples(arm)
                },
                "change_vs_original": {
                    arm: {c: {"mean": st.mean, "sd": st.sd, "n": st.n} for c, st in group.change(arm).items()}
                    for arm in group.arms[1:] if group.arm_samples(arm)
                },
                "samples": [
                    {"arm": s.arm, "seed": s.seed, "run_id": s.run_id, "n_test": s.n_test, **s.values}
                    for s in group.samples
                ],
                "runs": [
                    {"arm": r.arm, "seed": r.seed, "run_id": r.run_id, "status": r.status, "train_scorer_calls": r.train_calls}
                    for r in group.runs
                ],
            }
        )
    return {"kind": report.kind, "name": report.name, "id": report.ref_id, "complete": report.complete,
            "notes": report.notes, "groups": groups,
            "spend": [{"agent": a, "stage": st, "calls": n, "prompt_tokens": pt, "completion_tokens": ct, "usd": usd}
                      for a, st, n, pt, ct, usd in report.spend]}


# -- writing ---------------------------------------------------------------------------------


def write_report(log: EventLog, report: Report, directory: str | Path) -> list[Path]:
    """Write ``report.md`` and the PNG plots into ``directory``; returns the files written."""
    from .plots import plot_group

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    images: dict[int, list[tuple[str, str]]] = {}
    for i, group in enumerate(report.groups):
        files = plot_group(log, group, directory, prefix=f"{i + 1:02d}-{_slug(group.target)}")
        images[i] = [(caption, path.name) for caption, path in files]
        written += [path for _, path in files]
    md = directory / "report.md"
    md.write_text(render_markdown(report, images=images, database=log.path), encoding="utf-8")
    written.insert(0, md)
    return written


__all__ = (
    "COLUMNS",
    "ArmSample",
    "Group",
    "Report",
    "RunRef",
    "Stat",
    "build_report",
    "columns_of",
    "REPORT_LABELS",
    "candidate_points",
    "fmt_stat",
    "render_markdown",
    "report_json",
    "table_rows",
    "replay_test_answers",
    "write_report",
)
