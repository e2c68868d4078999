"""The one exception tree of tprompt.

Every error a user can cause or meet derives from :class:`TPromptError`. Each
carries a short ``code``, a ``hint`` saying what to do, and ``is_retryable``.
The CLI prints ``str(error)`` (message plus hint) on one line and exits with
``error.exit_code``: 1 for a failure of the data or environment, 2 for a
mistake in what the user asked.
"""

from __future__ import annotations

from typing import Any


class TPromptError(Exception):
    """Root of every tprompt error."""

    code: str = "tprompt"
    exit_code: int = 1
    is_retryable: bool = False

    def __init__(self, message: str, *, hint: str | None = None, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields
        for key, value in fields.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(TPromptError):
    """The user asked for something that cannot be done as asked."""

    code = "usage"
    exit_code = 2


# --- store -----------------------------------------------------------------


class StoreError(TPromptError):
    code = "store"


class NotATPromptDatabase(StoreError):
    code = "store.not_tprompt"


class DatabaseDamaged(NotATPromptDatabase):
    """The file is an SQLite database whose pages are damaged ("database disk image is malformed")."""

    code = "store.damaged"


class SchemaTooNew(StoreError):
    code = "store.schema_too_new"


class DatabaseLocked(StoreError):
    code = "store.locked"
    is_retryable = True


class ReadOnlyDatabase(StoreError):
    code = "store.read_only"


class ConflictError(StoreError):
    """Someone else appended to the run first: the expected seq was taken."""

    code = "store.conflict"
    is_retryable = True


class RunBusy(StoreError):
    """Another live process holds the run's lease: it is running the run now."""

    code = "store.run_busy"


class UnknownRun(StoreError, UsageError):
    code = "store.unknown_run"
    exit_code = 2


class SeqOutOfRange(StoreError, UsageError):
    code = "store.seq_out_of_range"
    exit_code = 2


class MergeConflict(StoreError):
    """Two databases being merged hold the same run (or experiment) id with different contents."""

    code = "store.merge_conflict"


class MissingForkParent(MergeConflict):
    """A merge would leave a fork without its parent run (or without the parent's events up to the fork point)."""

    code = "store.missing_fork_parent"


class CorruptEvent(StoreError):
    """A stored event cannot be read: bad JSON, unknown type, newer schema."""

    code = "store.corrupt_event"


# --- models ------------------------------------------------------------------


class BackendError(TPromptError):
    code = "backend"


class UnknownModel(BackendError, UsageError):
    code = "backend.unknown_model"
    exit_code = 2


class ModelUnavailable(BackendError):
    code = "backend.unavailable"


class MissingExtra(BackendError):
    code = "backend.missing_extra"


class MissingCredentials(BackendError):
    code = "backend.missing_credentials"


class TransientBackendError(BackendError):
    code = "backend.transient"
    is_retryable = True


class JudgeUnparseable(BackendError):
    """No reply of the run's first judge batch could be read as scores: the run stops before paying for more."""

    code = "backend.judge_unparseable"


class ModelCallFailed(BackendError):
    """A model call still failed after its retries; the run can be resumed."""

    code = "backend.call_failed"


class ProgramFailed(TPromptError):
    """The user's program failed on every example of the run's first answer set: the run stops before paying for more."""

    code = "program.failed"


# --- tasks and config ----------------------------------------------------------


class TaskError(TPromptError):
    code = "task"
    exit_code = 2


class UnknownTask(TaskError):
    code = "task.unknown"


class BadTaskFile(TaskError):
    code = "task.bad_file"


class ConfigError(UsageError):
    code = "config"


class RecordedFileChanged(TPromptError):
    """A file a run recorded (task file, description sidecar, metric or program module) changed or is gone
    since: the data moved under the run, the command was right (exit 1, as any data failure)."""

    code = "run_files.changed"


def first_error(exc: ValueError, *, where: str | None = None, prefix: tuple[str, ...] = ()) -> str:
    """The first problem of a pydantic ``ValidationError`` as one line, ``where: field.path: message``
    (``where=""``: ``field.path: message``; without ``where``, no location: the message alone); any other
    ValueError: its text.

    The one formatting of a validation error for people (configs, experiment files, weights).
    """
    errors = getattr(exc, "errors", None)
    first: dict[str, Any] = dict(errors()[0]) if callable(errors) and errors() else {}
    msg = str(first.get("msg", exc)).removeprefix("Value error, ")
    if where is None:
        return msg
    loc = ".".join(str(p) for p in (*prefix, *(first.get("loc") or ())))
    if not loc:  # a rule over several keys (a model validator): the message names them itself
        return f"{where}: {msg}" if where else msg
    return f"{where}: {loc}: {msg}" if where else f"{loc}: {msg}"


# --- the terminal UI -------------------------------------------------------------


class AppCrashed(TPromptError):
    """The terminal UI stopped on an error of its own (Textual printed its traceback)."""

    code = "ui.crashed"


__all__ = (
    "TPromptError",
    "UsageError",
    "StoreError",
    "NotATPromptDatabase",
    "DatabaseDamaged",
    "SchemaTooNew",
    "DatabaseLocked",
    "ReadOnlyDatabase",
    "ConflictError",
    "UnknownRun",
    "SeqOutOfRange",
    "CorruptEvent",
    "MergeConflict",
    "MissingForkParent",
    "BackendError",
    "UnknownModel",
    "ModelUnavailable",
    "MissingExtra",
    "MissingCredentials",
    "TransientBackendError",
    "ModelCallFailed",
    "TaskError",
    "UnknownTask",
    "BadTaskFile",
    "first_error",
    "ConfigError",
    "RecordedFileChanged",
    "AppCrashed",
)
