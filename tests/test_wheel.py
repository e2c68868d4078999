"""The package as a user installs it: a built wheel in a fresh virtualenv.

An editable install hides a wheel that lacks files (it imports from the
checkout). These tests build the wheel, install it into a new venv, and run
the console script from there. The venv takes tprompt's dependencies from
this interpreter's site-packages through a ``.pth`` path entry (no download);
tprompt itself comes only from the wheel, which the tests check.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tprompt.errors import AppCrashed
from tprompt.stores import EventLog

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # A copy of the sources, so the build leaves nothing (build/, egg-info) in the checkout.
    src = out / "src"
    _copy_sources(src)
    built = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out / "dist", src)
    assert built.returncode == 0, built.stderr
    (found,) = (out / "dist").glob("tprompt-*.whl")
    return found


def _copy_sources(dest: Path) -> None:
    """The files git tracks (and any not yet committed), as a clean checkout has them."""
    listed = _run("git", "-C", ROOT, "ls-files", "-co", "--exclude-standard")
    assert listed.returncode == 0, listed.stderr
    for name in listed.stdout.splitlines():
        path = ROOT / name
        if path.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("venv") / "v"
    made = _run(sys.executable, "-m", "venv", "--without-pip", home)
    assert made.returncode == 0, made.stderr
    site = Path(_run(home / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # Dependencies from this interpreter (a plain path entry: its .pth files, the editable
    # install of the checkout among them, are not processed).
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(sys.executable, "-m", "pip", "--python", home / "bin" / "python", "install", "--no-deps", "-q", wheel)
    if installed.returncode != 0 and "no such option: --python" in installed.stderr:  # pip < 22.3
        installed = _run(sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--prefix", home, wheel)
    assert installed.returncode == 0, installed.stderr
    return home


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TPROMPT_DB")}
    env["HOME"] = str(tmp_path)  # no user config or cache of the developer's
    return env


def test_the_wheel_holds_every_subpackage(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    packages = {str(p.parent.relative_to(ROOT)) for p in ROOT.rglob("__init__.py")
                if ".venv" not in p.parts and p.parent.parts[len(ROOT.parts):][:1] not in (("tests",), ("build",))}
    for package in packages:
        prefix = "tprompt/" if package == "." else f"tprompt/{package}/"
        assert f"{prefix}__init__.py" in names, f"{prefix} missing from the wheel"
    assert "tprompt/tui/screens/run.py" in names
    assert any(n.startswith("tprompt/tui/") and n.endswith(".tcss") for n in names)
    assert any(n.startswith("tprompt/evaluator/data/") and n.endswith(".jsonl") for n in names)
    assert "tprompt/py.typed" in names
    assert not any(n.startswith(("tprompt/tests/", "tprompt/benchmarks/")) or n == "tprompt/setup.py" for n in names)


def test_the_wheel_holds_the_examples_the_docs_name(wheel: Path) -> None:
    """Issue 29: the docs point to examples/my_metrics.py, examples/judge.toml ..., which a wheel install lacked."""
    names = set(zipfile.ZipFile(wheel).namelist())
    listed = _run("git", "-C", ROOT, "ls-files", "-co", "--exclude-standard", "examples").stdout.split()
    assert "examples/my_metrics.py" in listed and "examples/dates/template.json" in listed
    missing = [name for name in listed if (ROOT / name).is_file() and f"tprompt/{name}" not in names]
    assert not missing, f"not in the wheel: {missing}"


def test_installed_examples_command_copies_them(venv: Path, tmp_path: Path) -> None:
    copied = _run(venv / "bin" / "tprompt", "examples", "--copy", tmp_path / "here", env=_env(tmp_path), cwd=tmp_path)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "here" / "examples" / "judge.toml").read_bytes() == (ROOT / "examples" / "judge.toml").read_bytes()


def test_installed_wheel_runs_graph_and_ui_screenshot(venv: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    where = _run(venv / "bin" / "python", "-c", "import tprompt; print(tprompt.__file__)", env=env, cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout  # the wheel's copy, not the checkout

    tprompt = venv / "bin" / "tprompt"
    drawn = _run(tprompt, "--db", tmp_path / "t.db", "graph", "--ascii", env=env, cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    assert "propose" in drawn.stdout and "transfer" in drawn.stdout

    made = _run(tprompt, "--db", tmp_path / "t.db", "run", "--model", "fake", "--steps", "1", "--candidates", "1",
                "--examples", "2", "--test-examples", "2", env=env, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    shot = tmp_path / "shot.svg"
    ui = _run(tprompt, "--db", tmp_path / "t.db", "ui", "--screenshot", shot, env=env, cwd=tmp_path)
    assert ui.returncode == 0, ui.stderr
    assert "Traceback" not in ui.stderr
    assert shot.read_text().startswith("<svg")


def test_a_crashing_ui_exits_non_zero_and_saves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from tprompt.cli import main
    from tprompt.tui import app as app_module

    def broken(self: object) -> None:
        raise ModuleNotFoundError("No module named 'tprompt.tui.screens'")

    monkeypatch.setattr(app_module.TPromptApp, "on_mount", broken)
    EventLog(tmp_path / "t.db").close()
    shot = tmp_path / "shot.svg"
    code = main(["--db", str(tmp_path / "t.db"), "ui", "--screenshot", str(shot)])
    assert code == 1
    assert not shot.exists()
    err = capsys.readouterr().err
    assert f"saved {shot}" not in err and AppCrashed.__name__ not in err
    assert "the terminal UI stopped with an error" in err


def test_requires_python_covers_every_dependency() -> None:
    """The declared Python floor is one every dependency installs on (3.10 was declared once; langchain 1.x needs 3.11)."""
    import tomllib
    from importlib.metadata import PackageNotFoundError, metadata

    from packaging.requirements import Requirement
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = SpecifierSet(project["requires-python"])
    floor = min((s.version for s in ours if s.operator == ">="), key=lambda v: tuple(map(int, v.split("."))))
    for line in project["dependencies"]:
        req = Requirement(line)
        try:
            theirs = metadata(req.name).get("Requires-Python")
        except PackageNotFoundError:
            continue
        if theirs:
            assert SpecifierSet(theirs).contains(floor), f"{req.name} needs Python {theirs}, tprompt declares {ours}"
