"""User metrics in a worker process: what a user's code does cannot end, hang or corrupt the run.

A metric named by import path (``--metric mypkg.metrics:tone``) is imported and
called in one persistent child process per tprompt process, never in the
run's own:

* an exception, ``SystemExit``, ``KeyboardInterrupt`` or ``os._exit`` in the
  metric is that metric's failure on that example (undefined there, counted,
  a one-line reason in the log); the run goes on;
* a call that gives no result within the run's ``metric_timeout`` is a failure
  too: the worker is killed and a fresh one takes the next call;
* a pause (Ctrl-C, SIGTERM, ``tprompt pause``) stops waiting within
  :data:`POLL_S`: the worker is killed and :class:`MetricsAbandoned` raised;
* what the module prints (Python or C level, at import or per call) goes to
  the metric log (:func:`log_path`), never to the terminal or ``--json``;
* an import that fails, exits, is interrupted or hangs is a
  :class:`~tprompt.errors.ConfigError` (one line) before anything is written.

Calls are batched: one request carries every example of an answer set and
the worker streams one result per example back, so the per-call overhead is
a pickled row (``benchmarks/bench_metric_isolation.py``). The built-in metrics
are the project's own code and run in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Generic, TypeVar

from .._signals import watch_parent
from ..config import DEFAULT_METRIC_TIMEOUT
from ..errors import ConfigError

#: How often a wait for the worker looks whether the run still wants the result (a pause).
POLL_S = 0.1
#: Seconds a new worker may take to start (a fresh interpreter importing tprompt's evaluator; no user code yet).
START_TIMEOUT = 300.0
#: How often the worker looks whether its parent is still alive (it exits when not).
_ORPHAN_POLL_S = 0.5

# The child's first lines: read sys.path (and the working folder) from the parent, then serve.
_BOOT = (
    "import sys\n"
    "from multiprocessing.connection import Connection\n"
    "rx, tx = Connection({rx}, writable=False), Connection({tx}, readable=False)\n"
    "sys.path[:] = rx.recv()\n"
    "{serve}"
)


_IN_WORKER = False


def in_worker() -> bool:
    """True inside the worker process: user metrics are imported and called right here."""
    return _IN_WORKER


class MetricsAbandoned(Exception):
    """Control flow: the run stopped waiting for a user metric (it is pausing); nothing of the set is recorded."""


@dataclass(frozen=True, slots=True)
class Failed:
    """One call of a user metric that gave no value: why, in one line."""

    reason: str


def log_path() -> Path:
    """The file where user metrics' output and failures are kept: ``$TPROMPT_HOME/logs/metrics.log``."""
    from ..models._fetch import cache_home

    return cache_home() / "logs" / "metrics.log"


def one_line(exc: BaseException) -> str:
    """An exception as one printable line: ``ValueError: the message`` (control characters escaped, 300 chars at most)."""
    from .._text import printable

    text = " ".join(printable(str(exc)).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


# --- the child -----------------------------------------------------------------------------------------------------


def serve(rx: Connection, tx: Connection, registry: Any) -> None:
    """The worker's loop: ``("load", ref)`` and ``("call", ref, items)`` requests until the parent closes the pipe.

    ``registry`` is :mod:`tprompt.evaluator.registry` (passed in: it imports this module).
    """
    global _IN_WORKER
    _IN_WORKER = True
    child_ready(tx)
    while True:
        try:
            request = rx.recv()
        except (EOFError, OSError):
            return
        if request[0] == "load":
            tx.send(_load(registry, request[1]))
        elif request[0] == "call":
            _call(registry, request[1], request[2], tx)
        sys.stdout.flush()
        sys.stderr.flush()


def child_ready(tx: Connection) -> None:
    """A worker child's setup, then ``("ready",)`` to its parent: Ctrl-C ignored, its own end when the parent's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C pauses the run; the run then ends this process
    watch_parent(os.getppid(), lambda: os._exit(3), poll=_ORPHAN_POLL_S)  # even while user code hangs
    tx.send(("ready",))  # the user's time limits start now, not while this interpreter starts


def _load(registry: Any, ref: str) -> tuple[Any, ...]:
    try:
        m = registry.resolve_metric(ref)
    except ConfigError as exc:
        return ("error", exc.message, exc.hint)
    except BaseException as exc:  # SystemExit, KeyboardInterrupt at import: the user's code, reported
        return ("error", f"metric {ref}: importing it raised {one_line(exc)}", "fix the module so it imports")
    return ("loaded", registry.declared_of(m))


def _call(registry: Any, ref: str, items: Sequence[tuple[Any, ...]], tx: Connection) -> None:
    m = registry.resolve_metric(ref)
    for i, args in enumerate(items):
        try:
            got: Any = registry.checked_values(m, m.fn(*args))
        except BaseException as exc:  # anything the user's function raises or exits with: this call's failure
            got = Failed(one_line(exc))
        tx.send((i, got))


# --- the parent ----------------------------------------------------------------------------------------------------


class Worker:
    """One child process serving user code over two pipes (its output to a log); killed on a timeout or a pause.

    The machinery shared by user metrics (:class:`MetricWorker`) and programs
    (:class:`~tprompt.evaluator.program_worker.ProgramWorker`): a fresh interpreter started with the
    parent's working folder and import path, its SIGINT ignored, ending itself when its parent dies, its
    stdout and stderr appended to :attr:`log`.
    """

    #: What the child runs after its boot lines (``rx``, ``tx`` are its pipes).
    serve_code = ("from tprompt.evaluator import registry\n"
                  "from tprompt.evaluator.metric_worker import serve\n"
                  "serve(rx, tx, registry)\n")
    #: Whose worker this is, in messages, and the config key its failures name.
    what, key = "metric", "metrics"

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._rx: Connection | None = None
        self._tx: Connection | None = None
        self._env: list[str] = []  # the working folder and import path the worker was started with
        self._lock = threading.Lock()

    def log(self) -> Path:
        """The file the worker's output goes to."""
        return log_path()

    def _restarted(self) -> None:
        """Called once a fresh worker is ready (a subclass reloads what the last one had imported)."""

    def _start(self, env: list[str] | None = None) -> None:
        """Start the worker unless it runs. ``env`` (folder and import path) is given by an import only.

        An import from another folder or import path than the worker's (a long-lived Python caller that
        changed them) starts a fresh worker there. A call never does: it runs where its code was imported,
        even when this process has since left that folder (a test or caller that restores ``sys.path``).
        """
        if self._proc is not None and self._proc.poll() is None:
            if env is None or env == self._env:
                return
            self._forget()
        self.close()
        self._env = env or self._env or _here()
        path = self.log()
        path.parent.mkdir(parents=True, exist_ok=True)
        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        with open(path, "ab") as log:
            log.write(f"--- {self.what} worker for process {os.getpid()}, "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT.format(rx=req_r, tx=res_w, serve=self.serve_code)],
                pass_fds=(req_r, res_w), stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=self._env[0],
            )
        os.close(req_r)
        os.close(res_w)
        self._tx, self._rx = Connection(req_w, readable=False), Connection(res_r, writable=False)
        self._tx.send(self._env)
        try:
            self._wait(START_TIMEOUT, None)
        except (TimeoutError, EOFError):
            self.close()
            raise ConfigError(f"the {self.what} worker process did not start", key=self.key,
                              hint=f"see {self.log()}") from None
        self._restarted()

    def _forget(self) -> None:
        """Forget what the worker imported (it is replaced by one in another folder)."""

    def _send(self, request: tuple[Any, ...]) -> None:
        assert self._tx is not None
        self._tx.send(request)

    def _wait(self, timeout: float, abandoned: Callable[[], bool] | None) -> Any:
        """The worker's next message; TimeoutError after ``timeout`` s, EOFError when it died."""
        assert self._rx is not None
        deadline = time.monotonic() + timeout
        try:
            while True:
                if abandoned is not None and abandoned():
                    raise MetricsAbandoned()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                if self._rx.poll(min(POLL_S, left)):
                    return self._rx.recv()
        except (TimeoutError, EOFError):
            raise
        except OSError as exc:
            raise EOFError from exc
        except BaseException:  # a pause, Ctrl-C or SIGTERM while user code runs: end the worker, then give way
            self.close()
            raise

    def close(self) -> None:
        """End the worker (killed: it may be inside hung user code)."""
        proc, self._proc = self._proc, None
        for conn in (self._rx, self._tx):
            if conn is not None:
                conn.close()
        self._rx = self._tx = None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()


class MetricWorker(Worker):
    """One child process importing and calling user metrics; restarted after a timeout or a crash."""

    def __init__(self) -> None:
        super().__init__()
        self._loaded: dict[str, float] = {}  # ref -> the import timeout it loaded under (reloaded on restart)

    def load(self, ref: str, *, timeout: float, abandoned: Callable[[], bool] | None = None) -> dict[str, Any]:
        """Import ``ref`` in the worker; its declared spec (``name``, ``version``, ``per``, ``keys``, ...).

        Raises:
            ConfigError: the module does not import, exits, is interrupted or hangs past ``timeout``,
                or the function is not a metric.
        """
        with self._lock:
            reply = self._load(ref, timeout, abandoned)
            self._loaded[ref] = timeout
            return reply

    def _load(self, ref: str, timeout: float, abandoned: Callable[[], bool] | None) -> dict[str, Any]:
        self._start(_here())
        self._send(("load", ref))
        try:
            reply = self._wait(timeout, abandoned)
        except TimeoutError:
            self.close()
            raise ConfigError(f"metric {ref}: importing it took longer than {timeout:g} s", key="metrics",
                              hint="make the module import quickly, or raise metric_timeout") from None
        except EOFError:
            self.close()
            raise ConfigError(f"metric {ref}: the process importing it exited", key="metrics",
                              hint=f"see {log_path()}; fix the module so it imports") from None
        if reply[0] == "error":
            raise ConfigError(reply[1], hint=reply[2], key="metrics")
        return dict(reply[1])

    def call(self, ref: str, items: Sequence[tuple[Any, ...]], *, timeout: float,
             abandoned: Callable[[], bool] | None = None) -> list[Any]:
        """``ref``'s result on each argument tuple of ``items``: its values (``name -> float``), None, or :class:`Failed`.

        Raises:
            MetricsAbandoned: ``abandoned()`` turned True while waiting (the worker is ended).
        """
        results: list[Any] = []
        with self._lock:
            while len(results) < len(items):
                results.extend(self._batch(ref, items[len(results):], timeout, abandoned))
        return results

    def _batch(self, ref: str, items: Sequence[tuple[Any, ...]], timeout: float,
               abandoned: Callable[[], bool] | None) -> list[Any]:
        """As many results as the worker gives before it finishes, times out or dies (at least one)."""
        self._start()
        self._send(("call", ref, list(items)))
        got: list[Any] = []
        while len(got) < len(items):
            try:
                _, value = self._wait(timeout, abandoned)
            except TimeoutError:
                self.close()
                return [*got, Failed(f"no result within metric_timeout ({timeout:g} s)")]
            except EOFError:
                self.close()
                return [*got, Failed("the metric ended its worker process")]
            got.append(value)
        return got

    def _restarted(self) -> None:
        for ref, timeout in list(self._loaded.items()):
            self._load(ref, timeout, None)

    def _forget(self) -> None:
        self._loaded.clear()


def _here() -> list[str]:
    """This process's working folder and import path: where the worker imports a metric."""
    return [os.getcwd(), *(p for p in sys.path if isinstance(p, str))]


W = TypeVar("W", bound=Worker)


class OnePerProcess(Generic[W]):
    """This process's one worker of a kind: started on first use, ended at exit."""

    def __init__(self, make: Callable[[], W]) -> None:
        self._make = make
        self._worker: W | None = None
        self._lock = threading.Lock()

    def get(self) -> W:
        with self._lock:
            if self._worker is None:
                import atexit

                self._worker = self._make()
                atexit.register(self._worker.close)
            return self._worker

    def reset(self) -> None:
        """End the worker and forget what it imported (its next use starts afresh)."""
        with self._lock:
            if self._worker is not None:
                self._worker.close()
                self._worker._forget()


_WORKER = OnePerProcess(MetricWorker)


def worker() -> MetricWorker:
    """This process's metric worker (started on first use, ended at exit)."""
    return _WORKER.get()


def note_failures(ref: str, failures: Sequence[tuple[str, str]]) -> None:
    """Append one line per failed call (``(example id, reason)``) to the metric log."""
    if not failures:
        return
    path = log_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    with open(path, "a", encoding="utf-8", errors="backslashreplace") as log:
        log.writelines(f"{stamp} metric {ref} failed on example {ex}: {reason}\n" for ex, reason in failures)


__all__ = ("DEFAULT_METRIC_TIMEOUT", "Failed", "MetricWorker", "MetricsAbandoned", "OnePerProcess", "Worker", "child_ready", "in_worker", "log_path",
           "note_failures", "one_line", "reset", "serve", "worker")


def reset() -> None:
    """End this process's worker and forget what it imported (the next use starts afresh, e.g. after a module changed)."""
    _WORKER.reset()
