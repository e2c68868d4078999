"""A user metric in the worker process vs the same function in-process (issue 32). Prints figures; not a test.

Run: python benchmarks/bench_metric_isolation.py [--answers 1000] [--repeat 7]

A per-example metric (token F1 against the row's references, written as a
user would: ``MODULE:FUNCTION``) is computed on ``--answers`` recorded answers
of the bundled ``pubmedqa_long`` task, as a run computes one candidate's
metrics (``MetricSet.compute``): once with the function called in this
process (how metrics ran before issue 32), once through the metric worker
(how a ``MODULE:FUNCTION`` metric runs now: one batch per answer set, one
result streamed back per example). The two are interleaved; medians of
``--repeat`` rounds, and their ratio, are printed. The worker's start (a new
interpreter importing tprompt's evaluator and the module) is paid once per
process and printed on its own.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODULE = '''
from collections import Counter
from tprompt import metric


@metric(name="{name}")
def f1(example, answer):
    pred = answer.lower().split()
    best = 0.0
    for ref in example.targets:
        gold = ref.lower().split()
        common = sum((Counter(pred) & Counter(gold)).values())
        if common:
            p, r = common / len(pred), common / len(gold)
            best = max(best, 2 * p * r / (p + r))
    return best
'''


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from tprompt.evaluator import load_task, metric_worker
    from tprompt.evaluator.registry import MetricSet, register_metric, resolve_metric
    from tprompt.metric_specs import MetricSpec
    from tprompt.stores.events import Answer

    folder = Path(tempfile.mkdtemp(prefix="bench-metric-"))
    (folder / "bench_isolated.py").write_text(MODULE.format(name="f1_isolated"))
    (folder / "bench_inproc.py").write_text(MODULE.format(name="f1_inproc"))
    sys.path.insert(0, str(folder))

    task = load_task("pubmedqa_long")
    rows = [*task.train, *task.test]
    answers = [Answer(example_id=e.id, parsed=" ".join(e.targets[0].split()[:12]) if e.targets else "no",
                      confidence=0.5, followed_format=True, correct=False)
               for e in (rows[i % len(rows)] for i in range(args.answers))]

    import bench_inproc  # the same function, called in this process: the pre-issue-32 path

    inproc = MetricSet((register_metric(MetricSpec("f1_inproc", "F1 in-process"), bench_inproc.f1,
                                        ref="bench_inproc:f1"),))
    t0 = time.perf_counter()
    isolated = MetricSet((resolve_metric("bench_isolated:f1"),))
    start = time.perf_counter() - t0
    assert isolated.metrics[0].isolated and not inproc.metrics[0].isolated

    here: list[float] = []
    there: list[float] = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        a, _ = inproc.compute(answers, task)
        here.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        b, _ = isolated.compute(answers, task)
        there.append(time.perf_counter() - t0)
        assert a["f1_inproc"] == b["f1_isolated"], (a, b)  # the same values either way
    metric_worker.reset()

    h, t = statistics.median(here), statistics.median(there)
    print(f"python {platform.python_version()}, {args.answers} answers, per-example metric, "
          f"median of {args.repeat} interleaved rounds")
    print(f"in-process : {h * 1000:8.1f} ms per answer set ({h / args.answers * 1e6:6.1f} us per answer)")
    print(f"isolated   : {t * 1000:8.1f} ms per answer set ({t / args.answers * 1e6:6.1f} us per answer)")
    print(f"ratio isolated / in-process: {t / h:.2f}x; extra per answer {(t - h) / args.answers * 1e6:.1f} us")
    print(f"worker start (once per process, includes importing the module): {start * 1000:.0f} ms")


if __name__ == "__main__":
    main()
