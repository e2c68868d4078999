"""The files a run reads, recorded so the run works from any folder and refuses a file changed since.

A new run records each task given as a path by its absolute path (the config
then names the task by that path) and each metric module (``MODULE:FUNCTION``)
by its file and the folder it imports from, each with a sha256 of its content
(``RunConfig.files``); a task file's description sidecar (``STEM.description.txt``)
too, as the proposer reads it. ``resume``, ``replay --rerun`` and ``rescore`` check
them first (:func:`check_files`): a file that changed or is gone is one clear
error, unless the caller accepts the change (``rescore --accept-changed``),
which records the new hashes in the new run.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Collection
from pathlib import Path

from .config import RecordedFile, RunConfig
from .errors import ConfigError, RecordedFileChanged

#: How a metric module is keyed in ``RunConfig.files``.
METRIC_KEY = "metric "
#: How a program's module is keyed in ``RunConfig.files``.
PROGRAM_KEY = "program "
#: How a task file's description sidecar (``STEM.description.txt``) is keyed in ``RunConfig.files``.
DESCRIPTION_KEY = "description "


def content_hash(path: Path) -> str:
    """sha256 of a file's bytes, or of a folder's files (relative names and contents, in name order)."""
    digest = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(f.relative_to(path)).encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
    else:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _is_path_task(name: str) -> bool:
    from .evaluator.tasks import bundled_names

    key = name.strip().strip("/")
    if key in bundled_names():
        return False
    try:
        return Path(name).expanduser().exists()
    except OSError:
        return False


def record_files(config: RunConfig, *, given: Collection[str] = ()) -> RunConfig:
    """``config`` with its path tasks named by absolute path and every task file, metric module and program
    module recorded.

    ``given``: task names given as Python objects (kept as they are). Call it after the
    metrics were resolved (their modules are imported then).
    """
    from .evaluator._userfiles import DESCRIPTION_SUFFIX

    files = dict(config.files)

    def absolute(name: str) -> str:
        if name in given or not _is_path_task(name):
            return name
        path = Path(name).expanduser().resolve()
        files[str(path)] = RecordedFile(path=str(path), sha256=content_hash(path))
        sidecar = path.with_name(path.stem + DESCRIPTION_SUFFIX)  # a folder's description.txt is in its hash
        if path.is_file() and sidecar.is_file():
            files[DESCRIPTION_KEY + str(path)] = RecordedFile(path=str(sidecar), sha256=content_hash(sidecar))
        return str(path)

    sources = [absolute(n) for n in config.source_tasks]
    target = absolute(config.target_task)
    modules = [(METRIC_KEY, ref) for ref in config.metrics] + ([(PROGRAM_KEY, config.program)] if config.program else [])
    for key, ref in modules:
        module_name = ref.partition(":")[0].strip()
        if ":" not in ref:
            continue
        file = getattr(sys.modules.get(module_name), "__file__", None) or _file_of(module_name)
        if not file:
            continue
        path = Path(file).resolve()
        root = path.parent if path.name != "__init__.py" else path.parent.parent
        for _ in module_name.split(".")[1:]:
            root = root.parent
        files[key + module_name] = RecordedFile(path=str(path), sha256=content_hash(path), root=str(root))
    return config.model_copy(update={"source_tasks": sources, "target_task": target, "files": files})


def _file_of(module_name: str) -> str | None:
    """The file of a metric module, found as the registry imports it (the working folder first), without running it.

    User metrics import in a worker process (:mod:`tprompt.evaluator.metric_worker`), so this process may
    never have imported the module.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        spec = importlib.util.find_spec(module_name)
    except (ImportError, ValueError):
        spec = None
    finally:
        if added:
            sys.path.remove(cwd)
    origin = spec.origin if spec is not None else None
    return origin if origin and origin not in ("built-in", "frozen") else None


def module_ref(ref: str, *, what: str) -> str:
    """``MODULE:FUNCTION`` for a ``--metric`` or ``--program`` given as a file, ``path/to/file.py:function``
    (``file:function``, with the file's folder put first on the import path); any other ``ref`` as it is.

    The run records that module's file, hash and folder as it records an import path's
    (:func:`record_files`), so a resumed run finds it from any folder.

    Raises:
        ConfigError: one line naming the file: it is not there, its name is no module name, or another module
            of that name would be imported in its place.
    """
    path_part, sep, function = ref.strip().rpartition(":")
    if not sep or not path_part.endswith(".py"):
        return ref
    path = Path(path_part).expanduser()
    where = f"{what} {ref.strip()}"
    if not path.is_file():
        raise ConfigError(f"{where}: no such file {path}", key=what,
                          hint=f"give the path of a Python file, e.g. --{what} my_{what}s.py:{function or 'run'}")
    path = path.resolve()
    module = path.stem
    if not module.isidentifier():
        raise ConfigError(f"{where}: {path.name} is not a Python module name", key=what,
                          hint="rename the file with letters, digits and _ only (it is imported by that name)")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
        from .evaluator import metric_worker

        metric_worker.reset()  # user metrics import in a worker that copies sys.path when it starts
    found = _file_of(module)  # as the metric worker and the program loader import it (the working folder first)
    if found is None or Path(found).resolve() != path:
        raise ConfigError(f"{where}: module {module} would import {found or 'another module'}, not {path}", key=what,
                          hint="rename the file to a name no other module has")
    return f"{module}:{function}"


def check_files(config: RunConfig, *, run_id: str, accept_changed: bool = False) -> RunConfig:
    """Refuse a run whose recorded files changed or are gone; put its metric modules' folders on the import path.

    Returns ``config`` with the current hashes when ``accept_changed`` (for a new run to record them).

    Raises:
        RecordedFileChanged: a recorded file is gone, or (without ``accept_changed``) its content changed (exit 1:
            a data failure, not a mistake in the command).
    """
    files = dict(config.files)
    for key, rec in config.files.items():
        path = Path(rec.path)
        what = (f"metric module {key.removeprefix(METRIC_KEY)}" if key.startswith(METRIC_KEY)
                else f"program module {key.removeprefix(PROGRAM_KEY)}" if key.startswith(PROGRAM_KEY)
                else "task description file" if key.startswith(DESCRIPTION_KEY) else "task file")
        if not path.exists():
            raise RecordedFileChanged(f"run {run_id}: its {what} {rec.path} is gone",
                              hint="put it back at that path (the run recorded its content hash)", key="files")
        now = content_hash(path)
        if now != rec.sha256:
            if not accept_changed:
                raise RecordedFileChanged(
                    f"run {run_id}: its {what} {rec.path} changed since the run recorded it "
                    f"(sha256 {rec.sha256[:12]} then, {now[:12]} now)",
                    hint="restore that content, or rescore the run under the new one: "
                    f"tprompt rescore {run_id} --accept-changed", key="files")
            files[key] = rec.model_copy(update={"sha256": now})
        if rec.root and rec.root not in sys.path:
            sys.path.insert(0, rec.root)  # the recorded module, from any folder (not a namesake in the working one)
            from .evaluator import metric_worker

            metric_worker.reset()  # user metrics import in a worker that copies sys.path when it starts
    return config.model_copy(update={"files": files}) if files != config.files else config


__all__ = ("METRIC_KEY", "PROGRAM_KEY", "check_files", "content_hash", "module_ref", "record_files")
