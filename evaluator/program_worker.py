"""A user's program in a worker process: its hang, ``os._exit`` or prints cannot end, hang or corrupt the run.

A program (``--program MODULE:FUNCTION``, :mod:`.program`) is imported and
called in one persistent child process per tprompt process, started and
watched as the metric worker is (:class:`~.metric_worker.Worker`), never in
the run's own:

* each row is a thread in the child; its ``llm`` is a LangChain chat model
  that sends every call (its messages and parameters) over the pipe to this
  process, which makes it through the run's recorder exactly as an in-process
  call (:meth:`~tprompt.models.chat_model.RecordedChatModel.answer`: the same
  cache key, transcript row, tokens and cost) and sends the reply back; rows
  answer concurrently, and a row's own parallel calls are allowed;
* an exception or exit in the program is that row's failed answer; a row that
  computes longer than ``program_timeout`` (its time waiting for its model
  calls not counted) is one too: the worker is killed and replaced;
* a worker that dies (``os._exit``, a crash in C code) fails no row it cannot
  blame: the rows it was running are run again each alone, and a row that ends
  its worker alone is that row's failed answer;
* a pause (Ctrl-C, SIGTERM, ``tprompt pause``) stops waiting within
  :data:`~.metric_worker.POLL_S` and kills the worker;
* what a row prints goes to the program log (:func:`log_path`), counted for the
  run's closing line; what the module prints at import goes to stderr, as the
  program's diagnostics;
* an import that fails, exits or hangs past ``program_timeout`` is a
  :class:`~tprompt.errors.ConfigError` (one line) before anything is written.
"""

from __future__ import annotations

import contextvars
import functools
import io
import itertools
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ..config import DEFAULT_PROGRAM_TIMEOUT
from ..errors import ConfigError, ModelCallFailed
from .metric_worker import POLL_S, START_TIMEOUT, OnePerProcess, Worker, _here, child_ready

#: What one row of a program gave: its output, its error (one line), how many lines it printed and the first.
RowResult = tuple[str | None, str | None, int, str | None]


def log_path() -> Path:
    """The file where programs' output is kept: ``$TPROMPT_HOME/logs/programs.log``."""
    from ..models._fetch import cache_home

    return cache_home() / "logs" / "programs.log"


class WorkerLost(Exception):
    """Control flow: the worker died while this row ran, and it was not running alone (the cause is unknown)."""


# --- the child -----------------------------------------------------------------------------------------------------


#: Where a row's prints go (None: the thread is not running a row: its writes go to the log alone).
_PRINTED: contextvars.ContextVar[Any] = contextvars.ContextVar("tprompt_program_output", default=None)


class _Routed:
    """The child's ``sys.stdout``/``sys.stderr``: everything to the log, a row's writes also counted for it."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        sink = _PRINTED.get()
        if sink is not None:
            sink.add(text)
        return int(self.stream.write(text) or 0)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


@dataclass
class _Slot:
    """A call of a row's ``llm`` waiting for its reply from the parent."""

    done: threading.Event = field(default_factory=threading.Event)
    reply: Any = None


class ProgramCallFailed(Exception):
    """Raised inside the program when the run could not make its call (the run fails or pauses)."""


class _Child:
    """The worker's side: imports programs and answers rows, each in a thread, its calls forwarded."""

    def __init__(self, rx: Connection, tx: Connection) -> None:
        self.rx, self.tx = rx, tx
        self._send_lock = threading.Lock()
        self.programs: dict[str, tuple[Callable[..., Any], str]] = {}
        self.waiting: dict[int, _Slot] = {}
        self._ids = itertools.count(1)

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self.tx.send(message)

    def serve(self) -> None:
        child_ready(self.tx)
        # LangChain is imported beside the program's import (the parent, told "warm", starts no row before it).
        threading.Thread(target=self._warm, daemon=True, name="tprompt-warm").start()
        sys.stdout, sys.stderr = _Routed(sys.stdout), _Routed(sys.stderr)
        while True:
            try:
                request = self.rx.recv()
            except (EOFError, OSError):
                return
            if request[0] == "load":
                self.send(self._load(request[1]))
            elif request[0] == "row":
                threading.Thread(target=self._row, args=request[1:], daemon=True,
                                 name=f"tprompt-row-{request[1]}").start()
            elif request[0] == "reply":
                slot = self.waiting.pop(request[1], None)
                if slot is not None:
                    slot.reply = request[2]
                    slot.done.set()

    def _warm(self) -> None:
        from langchain_core.runnables.config import var_child_runnable_config  # noqa: F401

        from . import _program_code  # noqa: F401

        proxy_class()
        self.send(("warm", "warm"))

    def _load(self, ref: str) -> tuple[Any, ...]:
        from ._program_code import import_program, one_line

        printed = io.StringIO()
        try:
            with redirect_stdout(printed), redirect_stderr(printed):
                fn, prompts, kind = import_program(ref)
        except ConfigError as exc:
            return ("error", "load", exc.message, exc.hint, printed.getvalue())
        except BaseException as exc:  # KeyboardInterrupt at import: the user's code, reported
            return ("error", "load", f"program {ref}: importing it raised {one_line(exc)}",
                    "fix the module so it imports", printed.getvalue())
        self.programs[ref] = (fn, kind)
        return ("loaded", "load", dict(prompts), kind, printed.getvalue())

    def _ask(self, rid: int, sent: Any, stop: Any, temperature: float, max_tokens: int) -> tuple[str, int, int]:
        qid = next(self._ids)
        slot = self.waiting[qid] = _Slot()
        self.send(("llm", rid, qid, (sent, stop, temperature, max_tokens)))
        slot.done.wait()
        if slot.reply[0] != "ok":
            raise ProgramCallFailed(slot.reply[1])
        return slot.reply[1], slot.reply[2], slot.reply[3]

    def _row(self, rid: int, ref: str, spec: str, inputs: dict[str, Any], prompts: dict[str, str]) -> None:
        from langchain_core.runnables.config import var_child_runnable_config

        from ._program_code import ProgramOutput, answer_of, one_line

        fn, kind = self.programs[ref]
        output = ProgramOutput()
        llm = proxy_class()(spec=spec)
        llm._ask = lambda *args: self._ask(rid, *args)
        _PRINTED.set(output)
        var_child_runnable_config.set(None)  # a LangGraph program is a graph of its own
        answer: str | None = None
        try:
            if kind == "run":
                result = fn(inputs, prompts=prompts, llm=llm)
            else:
                runnable = fn(prompts, llm)
                if not callable(getattr(runnable, "invoke", None)):
                    raise TypeError(f"{ref} returned a {type(runnable).__name__}, not a Runnable "
                                    "(a LangChain runnable or a compiled LangGraph graph, with invoke(inputs))")
                result = runnable.invoke(inputs)
            answer, error = answer_of(result)
        except BaseException as exc:  # anything the program raises or exits with (sys.exit too): a failed answer
            error = one_line(exc)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self.send(("done", rid, answer, error, output.lines, output.first))


def serve(rx: Connection, tx: Connection) -> None:
    """The worker's loop: ``load``, ``row`` and ``reply`` requests until the parent closes the pipe."""
    _Child(rx, tx).serve()


@functools.cache
def proxy_class() -> type:
    """The LangChain chat model class of the ``llm`` a program is given in the worker (langchain imported here)."""
    from langchain_core.language_models import BaseChatModel
    from pydantic import PrivateAttr

    from ..models.chat_model import chat_result, to_messages

    class _Proxy(BaseChatModel):
        """The ``llm`` a program is given in the worker: each call's messages and parameters go to the run."""

        spec: str = ""
        temperature: float = 0.0
        max_tokens: int = 256
        top_p: float = 1.0
        seed: int | None = None
        _ask: Any = PrivateAttr(default=None)

        @property
        def _llm_type(self) -> str:
            return f"tprompt-{self.spec}"

        def _generate(self, messages: Any, stop: list[str] | None = None, run_manager: Any = None,
                      **kwargs: Any) -> Any:
            text, prompt_tokens, completion_tokens = self._ask(
                to_messages(messages), tuple(stop or ()), float(kwargs.get("temperature", self.temperature)),
                int(kwargs.get("max_tokens", self.max_tokens)))
            return chat_result(text, prompt_tokens, completion_tokens)

    return _Proxy


# --- the parent ----------------------------------------------------------------------------------------------------


class _Gate:
    """Rows share the worker; a restart, an import or a row run alone has it to itself (waiting ones go first)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@dataclass
class _Generation:
    """One worker process's pipes and the waits on it (each row's queue, the import's), by key."""

    rx: Connection
    tx: Connection
    queues: dict[Any, queue.Queue[tuple[Any, ...]]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    #: set once the worker imported LangChain (a row's time limit starts after it)
    warm: threading.Event = field(default_factory=threading.Event)
    dead: bool = False

    def register(self, key: Any) -> queue.Queue[tuple[Any, ...]] | None:
        with self.lock:
            if self.dead:
                return None
            q: queue.Queue[tuple[Any, ...]] = queue.Queue()
            self.queues[key] = q
            return q

    def unregister(self, key: Any) -> None:
        with self.lock:
            self.queues.pop(key, None)

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            with self.send_lock:
                self.tx.send(message)
        except (OSError, ValueError):  # the worker is gone: the reader tells the waits
            pass

    def read(self) -> None:
        """Route each message of the worker to its wait; when the worker is gone, tell every wait."""
        try:
            while True:
                message = self.rx.recv()
                if message[0] == "warm":
                    self.warm.set()
                    continue
                with self.lock:
                    q = self.queues.get(message[1])
                if q is not None:
                    q.put(message)
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                self.dead = True
                waits = list(self.queues.values())
            for q in waits:
                q.put(("lost",))
            self.rx.close()


class ProgramWorker(Worker):
    """One child process importing programs and answering their rows; replaced after a timeout or a crash."""

    serve_code = "from tprompt.evaluator.program_worker import serve\nserve(rx, tx)\n"
    what, key = "program", "program"

    def __init__(self) -> None:
        super().__init__()
        self._loaded: dict[str, float] = {}  # ref -> the import timeout it loaded under (reloaded on restart)
        self._gate = _Gate()
        self._gen: _Generation | None = None
        self._rows = itertools.count(1)
        self._closing = threading.RLock()

    def log(self) -> Path:
        return log_path()

    def _restarted(self) -> None:
        assert self._rx is not None and self._tx is not None
        gen = self._gen = _Generation(self._rx, self._tx)
        self._rx = None  # the reader owns it now
        threading.Thread(target=gen.read, daemon=True, name="tprompt-program-reader").start()
        for ref, timeout in list(self._loaded.items()):
            self._load(ref, timeout)

    def _forget(self) -> None:
        self._loaded.clear()

    def close(self) -> None:
        """End the worker (killed: it may be inside a hung program); its reader tells the rows waiting on it."""
        with self._closing:
            self._close()

    def _close(self) -> None:
        proc, self._proc = self._proc, None
        gen, self._gen = self._gen, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if self._rx is not None:  # (no reader was started)
            self._rx.close()
        if self._tx is not None and gen is None:
            self._tx.close()
        self._rx = self._tx = None
        if gen is not None:
            with gen.send_lock:
                gen.tx.close()

    def _kill(self, gen: _Generation) -> None:
        """End ``gen``'s worker unless it was already replaced."""
        with self._closing:
            if self._gen is gen:
                self._close()

    def load(self, ref: str, *, timeout: float = DEFAULT_PROGRAM_TIMEOUT) -> tuple[dict[str, str], str]:
        """Import ``ref`` in the worker (from this process's folder and import path): its PROMPTS and its kind.

        Raises:
            ConfigError: one line: the module does not import, exits, hangs past ``timeout``, or breaks the contract.
        """
        with self._gate.exclusive():
            self._start(_here())
            reply = self._load(ref, timeout)
            self._loaded[ref] = timeout
            return reply

    def _load(self, ref: str, timeout: float) -> tuple[dict[str, str], str]:
        gen = self._gen
        q = gen.register("load") if gen is not None else None
        if gen is None or q is None:
            self.close()
            raise ConfigError(f"program {ref}: the process importing it exited", key="program",
                              hint=f"see {log_path()}; fix the module so it imports")
        deadline = time.monotonic() + timeout
        try:
            gen.send(("load", ref))
            while True:
                try:
                    reply = q.get(timeout=min(POLL_S, max(deadline - time.monotonic(), 0.001)))
                    break
                except queue.Empty:
                    if time.monotonic() >= deadline:
                        self.close()
                        raise ConfigError(f"program {ref}: importing it took longer than {timeout:g} s",
                                          key="program",
                                          hint="make the module import quickly, or raise program_timeout") from None
        except BaseException:
            if not isinstance(sys.exc_info()[1], ConfigError):  # Ctrl-C while a module hangs: end the worker
                self.close()
            raise
        finally:
            gen.unregister("load")
        if reply[0] == "lost":
            self.close()
            raise ConfigError(f"program {ref}: the process importing it exited", key="program",
                              hint=f"see {log_path()}; fix the module so it imports")
        if reply[-1]:
            sys.stderr.write(reply[-1])  # what its import printed: diagnostics, never the --json output
        if reply[0] == "error":
            raise ConfigError(reply[2], hint=reply[3], key="program")
        return dict(reply[2]), str(reply[3])

    def _ready(self, ref: str) -> _Generation | None:
        gen = self._gen
        proc = self._proc
        if gen is None or gen.dead or proc is None or proc.poll() is not None or ref not in self._loaded:
            return None
        return gen

    def run_row(self, ref: str, spec: str, inputs: dict[str, Any], prompts: Mapping[str, str], llm: Any, *,
                timeout: float, abandoned: Callable[[], bool] | None, alone: bool) -> RowResult:
        """What the program ``ref`` answers for one row: (output, error, lines printed, first line printed).

        Each call of its ``llm`` is made here by ``llm.answer`` (a :class:`~tprompt.models.chat_model.RecordedChatModel`).

        Raises:
            WorkerLost: the worker died while the row ran with others (not ``alone``): run it again alone.
            CallsAbandoned: ``abandoned()`` turned True (the worker is ended).
            ModelCallFailed: a call failed after its retries.
        """
        from ..models.recorder import CallsAbandoned

        rid = next(self._rows)
        while True:
            if abandoned is not None and abandoned():
                raise CallsAbandoned()
            with self._gate.exclusive() if alone else self._gate.shared():
                gen = self._ready(ref)
                q = gen.register(rid) if gen is not None else None
                if gen is not None and q is not None:
                    try:
                        self._await_warm(gen, abandoned)
                        gen.send(("row", rid, ref, spec, dict(inputs), dict(prompts)))
                        return self._serve(gen, q, llm, timeout, abandoned, alone)
                    finally:
                        gen.unregister(rid)
            with self._gate.exclusive():
                if self._ready(ref) is None:
                    try:
                        if self._gen is not None and self._gen.dead:
                            self.close()
                        self._start()
                        if ref not in self._loaded:
                            self._load(ref, timeout)
                            self._loaded[ref] = timeout
                    except ConfigError as exc:
                        return None, exc.message, 0, None

    def _await_warm(self, gen: _Generation, abandoned: Callable[[], bool] | None) -> None:
        """Wait until ``gen``'s worker imported LangChain (or died: the row then finds it lost)."""
        from ..models.recorder import CallsAbandoned

        deadline = time.monotonic() + START_TIMEOUT
        while not gen.warm.wait(POLL_S) and not gen.dead:
            if (abandoned is not None and abandoned()) or time.monotonic() > deadline:
                self._kill(gen)
                if abandoned is not None and abandoned():
                    raise CallsAbandoned()

    def _serve(self, gen: _Generation, q: queue.Queue[tuple[Any, ...]], llm: Any, timeout: float,
               abandoned: Callable[[], bool] | None, alone: bool) -> RowResult:
        """Answer the row's calls until it is done; its own time (no call in flight) bounded by ``timeout``."""
        from ..models.recorder import CallsAbandoned

        own, last, in_flight = 0.0, time.monotonic(), 0
        try:
            while True:
                if abandoned is not None and abandoned():
                    self._kill(gen)
                    raise CallsAbandoned()
                now = time.monotonic()
                if not in_flight:
                    own += now - last
                last = now
                if own >= timeout:
                    self._kill(gen)
                    return None, f"no answer within program_timeout ({timeout:g} s)", 0, None
                try:
                    message = q.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                kind = message[0]
                if kind == "llm":
                    in_flight += 1
                    _call_in_thread(llm, message[2], message[3], q)
                elif kind == "answered":
                    in_flight -= 1
                    qid, result = message[1], message[2]
                    if isinstance(result, BaseException):
                        gen.send(("reply", qid, ("failed", type(result).__name__)))
                        raise result
                    gen.send(("reply", qid, ("ok", result.text, result.prompt_tokens, result.completion_tokens)))
                elif kind == "done":
                    return message[2], message[3], int(message[4]), message[5]
                elif kind == "lost":
                    if abandoned is not None and abandoned():
                        raise CallsAbandoned()
                    if not alone:
                        raise WorkerLost()
                    return None, "the program ended its worker process", 0, None
        except BaseException as exc:  # Ctrl-C or SIGTERM while a program runs: end the worker, then give way
            if not isinstance(exc, (WorkerLost, ModelCallFailed)):  # (a failed call leaves the other rows be)
                self._kill(gen)
            raise


def _call_in_thread(llm: Any, qid: int, payload: tuple[Any, ...], q: queue.Queue[tuple[Any, ...]]) -> None:
    """Make one forwarded call in a thread of its own (a row's calls may be parallel); its outcome to ``q``."""
    sent, stop, temperature, max_tokens = payload

    def call() -> None:
        try:
            result: Any = llm.answer(tuple(tuple(m) for m in sent), tuple(stop), temperature=temperature,
                                     max_tokens=max_tokens)
        except BaseException as exc:  # a failed or abandoned call: the row raises it
            result = exc
        q.put(("answered", qid, result))

    threading.Thread(target=contextvars.copy_context().run, args=(call,), daemon=True,
                     name="tprompt-program-call").start()


_WORKER = OnePerProcess(ProgramWorker)


def worker() -> ProgramWorker:
    """This process's program worker (started on first use, ended at exit)."""
    return _WORKER.get()


def reset() -> None:
    """End this process's program worker and forget what it imported (the next use starts afresh)."""
    _WORKER.reset()


__all__ = ("ProgramCallFailed", "ProgramWorker", "RowResult", "WorkerLost", "log_path", "reset", "serve", "worker")
