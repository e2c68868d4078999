"""The scorer against lm-evaluation-harness on the same questions (issue 13). Prints figures; not a test.

Run: python benchmarks/bench_lm_eval.py [--n 48] [--threads 1] [--repeat 3] [--precision P] [--venv DIR]

lm-evaluation-harness is never a dependency of tprompt: it is installed in a
virtual environment of its own (``--venv``, default
``~/.cache/tprompt/bench-lm-eval``; made on the first run with
``pip install torch==2.13.0 lm-eval[hf] transformers``) and driven there in a
subprocess. Both sides score the same ``--n`` ARC-Challenge test questions
with the embedded SmolLM2-135M (fp32, the same local weights), the same chat
format (the benchmark's system prompt, the question and its lettered options
as the user turn, the chat template's assistant opening) and the letters as
the options:

* tprompt: ``TransformersBackend.option_probs`` on all questions in one call, at
  ``--precision`` (default: the precision a new run gets on this CPU,
  ``config.default_precision``); at a precision other than fp32 tprompt's fp32
  answers are computed too (untimed) and the share of questions where the two
  pick the same letter is printed;
* lm-eval: its HF backend (``HFLM``, ``batch_size=8``), a ``multiple_choice``
  task over the same rows with ``apply_chat_template`` and the same system
  instruction, an empty target delimiter (the option is the assistant's
  first token; tprompt's requests here have no answer prefix either, where
  the scorer's own requests end the context with "Answer: ").

Both use ``--threads`` torch threads; times exclude model loading; medians of
``--repeat``. Printed: each side's time, the ratio, and how often the two
pick the same letter (with the largest difference in option probability).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _own_venv import CACHE, own_python  # noqa: E402
from bench_scorer import LETTERS, SYSTEM, load_examples, user_text  # noqa: E402

#: Runs in the lm-eval environment: argv = rows.jsonl task_dir model_dir threads repeat system
DRIVER = r'''
import json, sys, time
rows_path, task_dir, model_dir, threads, repeat, system = sys.argv[1:7]
import torch
torch.set_num_threads(int(threads))
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
lm = HFLM(pretrained=model_dir, dtype="float32", batch_size=8, device="cpu")
manager = TaskManager(include_path=task_dir)
times, picks, probs = [], None, None
for _ in range(int(repeat)):
    t0 = time.perf_counter()
    out = simple_evaluate(model=lm, tasks=["tprompt_arc_bench"], task_manager=manager, apply_chat_template=True,
                          system_instruction=system, log_samples=True, num_fewshot=0, batch_size=8)
    times.append(time.perf_counter() - t0)
    samples = sorted(out["samples"]["tprompt_arc_bench"], key=lambda s: s["doc_id"])
    lls = [[float(r[0][0]) for r in s["resps"]] for s in samples]
    picks = [max(range(len(l)), key=l.__getitem__) for l in lls]
    probs = lls
print(json.dumps({"times": times, "picks": picks, "logliks": probs}))
'''

TASK_YAML = """task: tprompt_arc_bench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {rows}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{text}}}}"
doc_to_choice: "{{{{options}}}}"
doc_to_target: "{{{{label}}}}"
target_delimiter: ""
metric_list:
  - metric: acc
"""


def argmax(values) -> int:
    return max(range(len(values)), key=values.__getitem__)


def lm_eval_python(venv: Path) -> Path:
    """The lm-eval environment's python, made on first use."""
    import transformers

    return own_python(venv, probe="lm_eval", what="lm-evaluation-harness",
                      installs=[["torch==2.13.0"], ["lm-eval[hf]", f"transformers=={transformers.__version__}"]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--precision", help="tprompt's precision (default: the default for new runs on this CPU)")
    parser.add_argument("--venv", type=Path, default=CACHE / "bench-lm-eval")
    args = parser.parse_args()

    os.environ["TPROMPT_TORCH_THREADS"] = str(args.threads)
    from bench_precision import cpu_flags

    from tprompt.config import default_precision
    from tprompt.models import OptionsRequest, get_model
    from tprompt.models._fetch import smollm2_dir
    from tprompt.models.local.precision import check_precision

    precision = check_precision("smollm2", args.precision or default_precision("smollm2"))
    examples = load_examples(args.n)
    python = lm_eval_python(args.venv)
    backend = get_model("smollm2", precision=precision)
    requests = [
        # No answer prefix: the option is the assistant's first token, as lm-eval scores it here.
        OptionsRequest(messages=(("system", SYSTEM), ("user", user_text(ex))), options=tuple(LETTERS[: len(ex["choices"])]),
                       answer_prefix="")
        for ex in examples
    ]
    backend.option_probs(requests[:2])  # warm up
    ours_times, ours = [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ours = backend.option_probs(requests)
        ours_times.append(time.perf_counter() - t0)
    fp32_same = None
    if precision != "fp32":  # the same questions at fp32, untimed: how often the precision keeps fp32's answer
        fp32_picks = [argmax(p) for p, _ in get_model("smollm2").option_probs(requests)]
        fp32_same = sum(a == argmax(p) for a, (p, _) in zip(fp32_picks, ours))

    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "rows.jsonl"
        with rows.open("w", encoding="utf-8") as f:
            for ex in examples:
                options = list(LETTERS[: len(ex["choices"])])
                f.write(json.dumps({"text": user_text(ex), "options": options, "label": options.index(ex["answer"])}) + "\n")
        (Path(tmp) / "tprompt_arc_bench.yaml").write_text(TASK_YAML.format(rows=rows), encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
               "TOKENIZERS_PARALLELISM": "false"}
        done = subprocess.run(
            [str(python), "-c", DRIVER, str(rows), tmp, str(smollm2_dir()), str(args.threads), str(args.repeat), SYSTEM],
            env=env, capture_output=True, text=True, cwd=tmp,
        )
        if done.returncode != 0:
            raise SystemExit(f"lm-eval failed:\n{done.stderr[-3000:]}")
        theirs = json.loads(done.stdout.strip().splitlines()[-1])

    our_picks = [argmax(p) for p, _ in ours]
    same = sum(a == b for a, b in zip(our_picks, theirs["picks"]))
    worst = 0.0
    for (p, _), lls in zip(ours, theirs["logliks"]):
        top = max(lls)
        z = sum(math.exp(x - top) for x in lls)
        worst = max(worst, max(abs(a - math.exp(x - top) / z) for a, x in zip(p, lls)))
    ours_s, theirs_s = statistics.median(ours_times), statistics.median(theirs["times"])
    print(f"ARC-Challenge, {len(examples)} questions, SmolLM2-135M (tprompt at {precision}, lm-eval fp32), "
          f"{args.threads} torch thread(s), medians of {args.repeat}; {cpu_flags()}; "
          f"1-min load average {os.getloadavg()[0]:.2f}")
    print(f"  tprompt option_probs          {ours_s:7.2f} s   (runs {[round(t, 2) for t in ours_times]})")
    print(f"  lm-eval HFLM (batch 8)        {theirs_s:7.2f} s   (runs {[round(t, 2) for t in theirs['times']]})")
    print(f"  lm-eval / tprompt time: {theirs_s / ours_s:.2f}x")
    print(f"  same answer: {same}/{len(examples)}; largest option-probability difference {worst:.4f}")
    if fp32_same is not None:
        print(f"  tprompt {precision} picks tprompt fp32's answer: {fp32_same}/{len(examples)} ({fp32_same / len(examples):.1%})")


if __name__ == "__main__":
    main()
