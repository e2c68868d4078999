"""How often a run opens its resources before the graph's first node runs. Prints one line per function.

Run: python benchmarks/count_resources.py [--db PATH] [-- TPROMPT ARGS...]

``--db PATH`` runs the command on that database (a copy is not made: ``fork`` writes its fork there) instead
of a scratch one, so commands that need a run first can be counted, e.g. ``--db runs.db -- fork r-1a2b3c``.

Default command (issue 28): ``tprompt run --source ai2_science --target arc_challenge --judge fake
--metric rouge_l --model fake`` (small sizes, a scratch database). Counted by a profile hook on the
functions' code objects, so every caller counts whatever name it imported them under, in any thread:
the task loader (``evaluator.tasks.load_task``), the metric resolver (``evaluator.registry.resolve_metrics``),
``models.backend.get_model``, the run's fold (``stores.projection.fold``) and ``preflight``.
The counts are taken when the first graph node is entered (the whole command's counts are printed too).
"""

from __future__ import annotations

import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any

DEFAULT = ["run", "--source", "ai2_science", "--target", "arc_challenge", "--judge", "fake", "--metric", "rouge_l",
           "--model", "fake", "--steps", "1", "--candidates", "2", "--examples", "4", "--test-examples", "4"]


def _targets() -> dict[Any, str]:
    import importlib

    found: dict[Any, str] = {}
    for module, name, label in (
        ("tprompt.evaluator.tasks", "load_task", "task loader (load_task)"),
        ("tprompt.evaluator.registry", "resolve_metrics", "metric resolver (resolve_metrics)"),
        ("tprompt.models.backend", "get_model", "get_model"),
        ("tprompt.stores.projection", "fold", "fold of the run (projection.fold)"),
        ("tprompt.graph.api", "preflight", "preflight"),
    ):
        try:
            fn = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        found[getattr(fn, "__wrapped__", fn).__code__] = label
    return found


def main() -> None:
    args = sys.argv[1:]
    db_given = None
    if args[:1] == ["--db"] and len(args) > 1:
        db_given, args = args[1], args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    args = args or DEFAULT
    import tprompt.graph.nodes as nodes
    from tprompt.cli import app

    targets = _targets()
    node_codes = {fn.__code__ for fn in nodes.NODES.values()}
    counts: Counter[str] = Counter()
    before_first: dict[str, Counter[str]] = {}

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event != "call":
            return
        code = frame.f_code
        label = targets.get(code)
        if label is not None:
            counts[label] += 1
        elif code in node_codes and "first" not in before_first:
            before_first["first"] = Counter(counts)
            before_first["node"] = Counter({code.co_name: 1})

    with tempfile.TemporaryDirectory(prefix="tprompt-count-") as tmp:
        db = db_given or str(Path(tmp) / "count.db")
        threading.setprofile(hook)
        sys.setprofile(hook)
        try:
            app(["--db", db, *args], standalone_mode=False)
        finally:
            sys.setprofile(None)
            threading.setprofile(None)  # type: ignore[arg-type]
    first = before_first.get("first", Counter())
    node = next(iter(before_first.get("node", {"(none)": 1})))
    print(f"command: tprompt {' '.join(args)}")
    print(f"{'function':<38} {'before first node':>18} {'whole command':>14}")
    for label in sorted(set(targets.values())):
        print(f"{label:<38} {first[label]:>18} {counts[label]:>14}")
    print(f"first node: {node}")


if __name__ == "__main__":
    main()
