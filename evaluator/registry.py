"""Metric plug-ins: one registry of metric functions, named in configs by name or import path.

A metric is a function with a spec (:class:`tprompt.metric_specs.MetricSpec`:
name, direction, range, version). Two shapes:

* per example, ``fn(example, answer) -> float | dict[str, float] | None``; its
  value for a candidate is the mean over the examples it is defined on;
* over the whole answer set (``per="set"``), ``fn(examples, answers) -> ...``
  with the two lists in the same order.

``answer`` is the scorer's answer as recorded: the whole reply on an
open-ended task, the parsed answer (a letter, a number) on the others. A dict
result gives several metrics named ``<name>.<key>`` (declare the keys:
``@metric(keys=("warmth", "clarity"))``). ``None`` means "nothing to compare
with" (a row without a reference). A result that is not a number, is NaN or
infinite, lies outside the spec's range, or an exception, makes the metric
undefined on that example, counted in the candidate's ``undefined``; the run
goes on.

A metric named by import path is imported and called in a worker process
(:mod:`.metric_worker`): an exit, an interrupt, a hang past the run's
``metric_timeout`` or a print in it cannot end, hang or corrupt the run.

A run names its metrics in ``RunConfig.metrics`` (``--metric rouge_l``,
``--metric mypkg.metrics:tone``) and records each one's version in
``RunConfig.metric_versions``; :func:`resolve_metrics` re-creates them from
that, so ``resume``, ``replay --rerun``, ``rescore`` and the experiment grid
compute the same metrics, and refuses a version that changed.
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from ..errors import ConfigError, first_error
from ..judge.rubric import JUDGE_PREFIX, Rubric, judge_metric
from ..metric_specs import (
    BUILTIN_NAMES,
    DEFAULT_OPEN_METRICS,
    METRIC_NAMES,
    OPEN_METRICS,
    MetricSpec,
    metric_spec,
    register_spec,
    registered_names,
)
from . import metric_worker, open_metrics
from .metrics import compute_metrics
from .objective import ObjectiveWeights
from .task_model import Example, Task

Per = Literal["example", "set"]



@dataclass(frozen=True)
class Metric:
    """A metric function and its spec; ``ref`` is how configs name it (``rouge_l`` or ``pkg.mod:fn``)."""

    spec: MetricSpec
    fn: Callable[..., Any]
    ref: str
    per: Per = "example"
    keys: tuple[str, ...] = ()
    isolated: bool = False  # a user's metric: computed in the worker process, ``fn`` is not called here

    @property
    def names(self) -> tuple[str, ...]:
        """The metric names its values are recorded under."""
        return tuple(f"{self.spec.name}.{k}" for k in self.keys) if self.keys else (self.spec.name,)


_FUNCS: dict[str, Metric] = {}


def register_metric(spec: MetricSpec, fn: Callable[..., Any], *, per: Per = "example",
                    keys: Sequence[str] = (), ref: str | None = None, isolated: bool = False) -> Metric:
    """Register ``fn`` under ``spec`` (and ``ref``, default its name); returns the :class:`Metric`.

    Raises:
        ValueError: another metric holds the name, or the spec is malformed.
    """
    register_spec(spec)
    for key in keys:
        register_spec(MetricSpec(f"{spec.name}.{key}", f"{spec.label} {key}", spec.gloss, spec.higher_is_better,
                                 spec.range, False, spec.version))
    m = Metric(spec, fn, ref or spec.name, per, tuple(keys), isolated)
    _FUNCS[m.ref] = m
    if spec.name not in _FUNCS or ":" in _FUNCS[spec.name].ref:  # a built-in keeps its name; a user's, the latest
        _FUNCS[spec.name] = m
    return m


def metric(name: str | None = None, *, label: str | None = None, gloss: str = "", higher_is_better: bool = True,
           range: tuple[float, float] = (0.0, 1.0), version: str = "1", per: Per = "example",
           keys: Sequence[str] = ()) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator declaring a user metric's spec (without it: the function's name, range [0, 1], higher better, v1)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.__tprompt_metric__ = {  # type: ignore[attr-defined]
            "name": name or fn.__name__, "label": label or name or fn.__name__, "gloss": gloss,
            "higher_is_better": higher_is_better, "range": (float(range[0]), float(range[1])),
            "version": str(version), "per": per, "keys": tuple(keys),
        }
        return fn

    return wrap


for _spec in OPEN_METRICS:  # the built-in open-ended metrics: each spec with its function
    register_metric(_spec, getattr(open_metrics, _spec.name))


def builtin_names() -> tuple[str, ...]:
    """The metrics a run can name without an import path (the seven are always computed on closed tasks)."""
    return tuple(n for n, m in _FUNCS.items() if n == m.ref and ":" not in n)


def _bad(ref: str, what: str, hint: str) -> ConfigError:
    return ConfigError(f"metric {ref}: {what}", hint=hint, key="metrics")


def _import(ref: str) -> Any:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise _bad(ref, "expected an import path MODULE:FUNCTION", "e.g. --metric mypkg.metrics:tone")
    added = os.getcwd() not in sys.path
    if added:  # `tprompt` as a console script: let a module in the working folder import
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # anything the user's module raises while importing
        raise _bad(ref, f"cannot import {module_name} ({type(exc).__name__}: {exc})",
                   "check the module name and that it imports (python -c 'import MODULE')") from exc
    finally:
        if added:
            sys.path.remove(os.getcwd())
    fn = module
    for part in attr.split("."):
        if not hasattr(fn, part):
            raise _bad(ref, f"module {module_name} has no {attr!r}", "name a function defined in that module")
        fn = getattr(fn, part)
    return fn


def _check_signature(ref: str, fn: Any, per: Per) -> None:
    if not callable(fn):
        raise _bad(ref, f"{type(fn).__name__} is not a function", "name a function (example, answer) -> float")
    want = "(example, answer)" if per == "example" else "(examples, answers)"
    try:
        sig = inspect.signature(fn)
        sig.bind(None, None)
    except (TypeError, ValueError):
        raise _bad(ref, f"the function must take two arguments {want}, its signature is "
                   f"{getattr(fn, '__name__', ref)}{_sig(fn)}", f"define it as def f{want} -> float") from None


def _sig(fn: Any) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(?)"


def resolve_metric(ref: str, *, timeout: float = metric_worker.DEFAULT_METRIC_TIMEOUT,
                   abandoned: Callable[[], bool] | None = None) -> Metric:
    """The metric a config names: a registered name (``rouge_l``) or an import path (``pkg.mod:fn``).

    An import path is imported in the metric worker (``timeout``: seconds the import may take).

    Raises:
        ConfigError: unknown name, a path that does not import (or exits, or hangs), not a function,
        the wrong signature, a malformed spec, or a name another metric holds.
    """
    ref = ref.strip()
    if ref in _FUNCS:
        return _FUNCS[ref]
    if ":" not in ref:
        if ref in METRIC_NAMES:
            raise _bad(ref, "is one of the seven computed on every closed task; it needs no --metric",
                       "weight it with --weight instead")
        raise _bad(ref, "unknown metric name", f"built in: {', '.join(builtin_names())}; or give MODULE:FUNCTION")
    if not metric_worker.in_worker():
        declared = metric_worker.worker().load(ref, timeout=timeout, abandoned=abandoned)
        return _register_declared(ref, declared, _in_worker_only, isolated=True)
    fn = _import(ref)
    declared = dict(getattr(fn, "__tprompt_metric__", None) or {"name": ref.rpartition(":")[2].split(".")[-1]})
    _check_signature(ref, fn, declared.get("per", "example"))
    return _register_declared(ref, declared, fn)


def _register_declared(ref: str, declared: Mapping[str, Any], fn: Callable[..., Any], *,
                       isolated: bool = False) -> Metric:
    declared = dict(declared)
    per: Per = declared.pop("per", "example")
    keys = tuple(declared.pop("keys", ()))
    name = str(declared["name"])
    if name in BUILTIN_NAMES or name.startswith(JUDGE_PREFIX):
        what = "the LLM judge's metrics" if name.startswith(JUDGE_PREFIX) else "a built-in metric"
        raise _bad(ref, f"its name {name!r} is already registered for {what}; a metric of yours cannot take its place",
                   "give it another name with @metric(name=...)")
    try:
        spec = MetricSpec(**{"label": declared["name"], **declared})
        return register_metric(spec, fn, per=per, keys=keys, ref=ref, isolated=isolated)
    except (TypeError, ValueError) as exc:
        raise _bad(ref, str(exc), "give the metric another name with @metric(name=...)") from None


def _in_worker_only(*args: Any) -> Any:
    raise RuntimeError("a user metric is called in the metric worker (tprompt.evaluator.metric_worker)")


def declared_of(m: Metric) -> dict[str, Any]:
    """What the worker tells the run about a metric it imported: its spec's fields, ``per`` and ``keys``."""
    s = m.spec
    return {"name": s.name, "label": s.label, "gloss": s.gloss, "higher_is_better": s.higher_is_better,
            "range": s.range, "pareto": s.pareto, "version": s.version, "per": m.per, "keys": m.keys}


def resolve_metrics(refs: Iterable[str], versions: Mapping[str, str] | None = None, *,
                    timeout: float = metric_worker.DEFAULT_METRIC_TIMEOUT,
                    abandoned: Callable[[], bool] | None = None) -> MetricSet:
    """The run's metric set from its config's ``metrics`` (and, for a recorded run, ``metric_versions``).

    ``timeout`` bounds each import and each call of a user metric (the run's ``metric_timeout``);
    ``abandoned()`` turning True stops a wait for one (:class:`~.metric_worker.MetricsAbandoned`).

    Raises:
        ConfigError: as :func:`resolve_metric`, or a metric whose version is not the one the run recorded.
    """
    metrics = tuple(resolve_metric(r, timeout=timeout, abandoned=abandoned) for r in dict.fromkeys(refs))
    named: dict[str, str] = {}
    for m in metrics:
        for name in m.names:
            other = named.setdefault(name, m.ref)
            if other != m.ref:
                raise _bad(m.ref, f"its name {name!r} is also the name of metric {other} in this run",
                           "give one of them another name with @metric(name=...)")
    for m in metrics:
        recorded = (versions or {}).get(m.ref)
        if recorded is not None and recorded != m.spec.version:
            raise ConfigError(
                f"metric {m.ref}: the run was recorded with version {recorded}, the code now has version "
                f"{m.spec.version}", key="metrics",
                hint="restore that version, or rescore the run under the new one (tprompt rescore RUN --metric ...)",
            )
    return MetricSet(metrics, timeout=timeout, abandoned=abandoned)


def metric_versions(metrics: MetricSet) -> dict[str, str]:
    """``ref -> version`` of a metric set: what a run records (``RunConfig.metric_versions``)."""
    return {m.ref: m.spec.version for m in metrics.metrics}


def _check_value(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"returned {type(value).__name__}, not a number")
    number = float(value)
    lo, hi = metric_spec(name).range
    if not math.isfinite(number) or not lo <= number <= hi:
        raise ValueError(f"returned {number}, outside its range [{lo}, {hi}]")
    return number


#: Longest feedback text kept per example and metric (the rest is cut: events stay small).
MAX_FEEDBACK_CHARS = 400


class Scored(NamedTuple):
    """A per-example metric's value with its feedback: what went wrong on this example, in words.

    A metric may return this, any ``(score, text)`` pair, or an object with
    ``score`` and ``feedback`` attributes; the text is recorded with the
    example's value and shown to the reflective proposer.
    """

    score: Any
    feedback: str


def split_feedback(result: Any) -> tuple[Any, str | None]:
    """``(value, feedback)`` of one metric result: a ``(score, text)`` pair, an object with both, or a bare value."""
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], str):
        return result[0], result[1]
    if hasattr(result, "score") and hasattr(result, "feedback"):
        text = result.feedback
        return result.score, text if isinstance(text, str) else None
    return result, None


def _values(m: Metric, result: Any) -> dict[str, float] | None:
    """One call's result as ``name -> value`` (None: no value); raises for a bad result."""
    if result is None:
        return None
    if m.keys:
        if not isinstance(result, Mapping) or set(result) != set(m.keys):
            raise ValueError(f"returned {result!r:.60}, not a dict with the keys {', '.join(m.keys)}")
        return {f"{m.spec.name}.{k}": _check_value(f"{m.spec.name}.{k}", result[k]) for k in m.keys}
    return {m.spec.name: _check_value(m.spec.name, result)}


def checked_values(m: Metric, result: Any) -> tuple[dict[str, float] | None, str | None]:
    """One call's result as ``(name -> value or None, feedback or None)``; raises for a bad result.

    The one rule for a result, in the run's process and in the metric worker alike.
    """
    value, note = split_feedback(result)
    return _values(m, value), note


@dataclass(frozen=True)
class MetricSet:
    """The metric plug-ins a run computes on top of the seven (closed tasks) or instead of them (open tasks)."""

    metrics: tuple[Metric, ...] = ()
    timeout: float = metric_worker.DEFAULT_METRIC_TIMEOUT
    abandoned: Callable[[], bool] | None = field(default=None, compare=False, repr=False)
    #: metric ref -> (failed calls, the first one's reason), over every set this computed: what the run reports.
    failures: dict[str, tuple[int, str]] = field(default_factory=dict, compare=False, repr=False)
    _examples: dict[str, dict[str, Example]] = field(default_factory=dict, compare=False, repr=False)

    @property
    def refs(self) -> tuple[str, ...]:
        return tuple(m.ref for m in self.metrics)

    def plugins_for(self, task: Task | None) -> tuple[Metric, ...]:
        """The plug-ins computed on ``task``: the named ones, or the defaults on an open task that names none."""
        if self.metrics or task is None or task.kind != "text":
            return self.metrics
        return tuple(resolve_metric(r) for r in DEFAULT_OPEN_METRICS)

    def names(self) -> tuple[str, ...]:
        """Every metric name this set may record (the defaults of open tasks included)."""
        return tuple(n for m in (*self.metrics, *(resolve_metric(r) for r in DEFAULT_OPEN_METRICS)) for n in m.names)

    def compute(self, answers: Sequence[Any], task: Task | None = None
                ) -> tuple[dict[str, float | None], dict[str, int]]:
        """``(metrics, undefined)`` of one recorded answer set on ``task`` (None: the seven only).

        ``answers`` are :class:`tprompt.stores.events.Answer`-shaped (``example_id``, ``parsed``, ``correct``,
        ``confidence``, ``followed_format``); ``undefined`` counts, per metric, the examples it failed on.
        """
        done = self.compute_all(answers, task)
        return done.values, done.undefined

    def compute_all(self, answers: Sequence[Any], task: Task | None = None) -> Computed:
        """As :meth:`compute`, with each per-example plug-in's value and feedback on every example."""
        out = Computed()
        if task is None or task.kind != "text":
            out.values.update(compute_metrics([a.correct for a in answers], [a.confidence for a in answers],
                                              [a.followed_format for a in answers]))
            if task is not None:
                by_id = self._by_id(task)
                notes = {a.example_id: answer_feedback(a, by_id[a.example_id]) for a in answers if a.example_id in by_id}
                out.feedback["accuracy"] = {k: v for k, v in notes.items() if v}
        plugins = self.plugins_for(task)
        if not plugins:
            return out
        if task is None:
            raise ValueError("plug-in metrics need the task the answers are on (its references)")
        by_id = self._by_id(task)
        rows = [(by_id[a.example_id], a.parsed or "") for a in answers if a.example_id in by_id]
        for m in plugins:
            if m.per == "example":
                got, bad = _per_example(m, rows, self._calls(m), out)
            else:
                got, bad = _per_set(m, rows, self._calls(m))
            out.values.update(got)
            out.undefined.update({n: bad for n in m.names if bad})
        return out

    def _calls(self, m: Metric) -> Callable[[list[tuple[Any, ...]], list[str]], list[Any]]:
        """How ``m`` is called on a batch of argument tuples (labelled for the log): in-process or in the worker."""

        def here(items: list[tuple[Any, ...]], labels: list[str]) -> list[Any]:
            out: list[Any] = []
            for args in items:
                try:
                    out.append(checked_values(m, m.fn(*args)))
                except Exception as exc:  # a metric failing on one example: undefined there, counted
                    out.append(metric_worker.Failed(metric_worker.one_line(exc)))
            return out

        def isolated(items: list[tuple[Any, ...]], labels: list[str]) -> list[Any]:
            out = metric_worker.worker().call(m.ref, items, timeout=self.timeout, abandoned=self.abandoned)
            failed = [(label, r.reason) for label, r in zip(labels, out) if isinstance(r, metric_worker.Failed)]
            if failed:
                n, first = self.failures.get(m.ref, (0, failed[0][1]))
                self.failures[m.ref] = (n + len(failed), first)
                metric_worker.note_failures(m.ref, failed)
            return out

        return isolated if m.isolated else here

    def _by_id(self, task: Task) -> dict[str, Example]:
        if task.name not in self._examples:
            self._examples[task.name] = {e.id: e for e in (*task.train, *task.test)}
        return self._examples[task.name]


@dataclass
class Computed:
    """What the evaluator computes of one answer set: the metrics, and per example what the plug-ins said.

    ``example_values``: metric name -> example id -> value (per-example
    plug-ins, where defined); ``feedback``: metric name -> example id -> the
    text a plug-in returned with its value (cut to :data:`MAX_FEEDBACK_CHARS`).
    """

    values: dict[str, float | None] = field(default_factory=dict)
    undefined: dict[str, int] = field(default_factory=dict)
    example_values: dict[str, dict[str, float]] = field(default_factory=dict)
    feedback: dict[str, dict[str, str]] = field(default_factory=dict)


def answer_feedback(answer: Any, example: Example) -> str:
    """What went wrong with one closed-task answer, in words ("" when it is right): wrong vs gold, or no answer."""
    if answer.correct:
        return ""
    gold = example.answer + (f" ({example.answer_text})" if example.choices and example.answer_text else "")
    if answer.parsed is None:
        return f"no answer in the required format; the gold answer is {gold}"
    return f"answered {answer.parsed}, the gold answer is {gold}"[:MAX_FEEDBACK_CHARS]


Calls = Callable[[list[tuple[Any, ...]], list[str]], list[Any]]


def _per_example(m: Metric, rows: list[tuple[Example, str]], calls: Calls, out: Computed | None = None
                 ) -> tuple[dict[str, float | None], int]:
    sums: dict[str, list[float]] = {n: [] for n in m.names}
    bad = 0
    for (ex, _), result in zip(rows, calls(list(rows), [ex.id for ex, _ in rows])):
        if isinstance(result, metric_worker.Failed):  # failed on one example: undefined there, counted, the run goes on
            bad += 1
            continue
        got, note = result
        for n, v in (got or {}).items():
            sums[n].append(v)
            if out is not None:
                out.example_values.setdefault(n, {})[ex.id] = v
                if note:
                    out.feedback.setdefault(n, {})[ex.id] = note[:MAX_FEEDBACK_CHARS]
    return {n: (math.fsum(v) / len(v) if v else None) for n, v in sums.items()}, bad


def _per_set(m: Metric, rows: list[tuple[Example, str]], calls: Calls) -> tuple[dict[str, float | None], int]:
    (result,) = calls([([ex for ex, _ in rows], [t for _, t in rows])], [f"set of {len(rows)}"])
    if isinstance(result, metric_worker.Failed):  # undefined for the whole set: every example counts
        return dict.fromkeys(m.names), len(rows)
    got, _ = result
    return {n: (got or {}).get(n) for n in m.names}, 0


def run_weights(weights: Mapping[str, float], metrics: MetricSet, extra: Iterable[str] = ()) -> dict[str, float]:
    """The weights a run's objective uses: every plug-in it computes (and ``extra``) at 1 unless ``weights`` say."""
    return {**dict.fromkeys((*metrics.names(), *extra), 1.0), **weights}


def run_objective_weights(weights: Mapping[str, float], metrics: MetricSet, rubric: Rubric | None = None, *,
                          open_tasks: bool = True) -> ObjectiveWeights:
    """The objective weights of a run that computes ``metrics`` (and, with a judge, ``rubric``'s criteria).

    The one check of a run's weights: a weight may name the seven, a metric of ``metrics`` or a criterion of the
    run's judge (``judge_<criterion>``), nothing else, whatever this process has imported; numbers >= 0, not all 0.
    With ``open_tasks`` False (no task of the run is open-ended) the open tasks' default metrics, which such a
    run never computes, do not count as a positive weight.

    Raises:
        ConfigError: ``weights: <what is wrong>``, the same line for every command.
    """
    judged = tuple(judge_metric(c.name) for c in rubric.criteria) if rubric is not None else ()
    computed = run_weights(weights, metrics)
    if not open_tasks and not metrics.metrics:
        computed = {k: v for k, v in computed.items() if k in weights or k not in DEFAULT_OPEN_METRICS}
    try:
        return ObjectiveWeights.model_validate(computed, context={"metrics": (*metrics.names(), *judged)})
    except ValueError as exc:  # pydantic's ValidationError
        raise ConfigError(first_error(exc, where="", prefix=("weights",)), key="weights",
                          hint="weights are numbers >= 0, not all 0, over the seven, the run's --metric ones "
                               "or its judge's criteria (judge_<criterion>)") from None



__all__ = ("DEFAULT_OPEN_METRICS", "MAX_FEEDBACK_CHARS", "Computed", "Metric", "MetricSet", "Scored", "builtin_names",
           "checked_values", "declared_of", "metric", "metric_versions", "register_metric", "registered_names",
           "resolve_metric", "resolve_metrics", "run_objective_weights", "run_weights", "split_feedback")
