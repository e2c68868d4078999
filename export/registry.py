"""A run's best prompt in a prompt registry's shape: MLflow's prompt registry and Langfuse's prompt JSON.

Both registries write variables as ``{{var}}`` (tprompt's templates use ``{var}``,
f-string style, ``{{``/``}}`` for a literal brace). A template of chat messages
becomes a chat prompt (a list of ``{role, content}``); a prompt with no known
template becomes a text prompt. The run's provenance rides along: as tags in
MLflow (string values), as ``config`` in Langfuse.
"""

from __future__ import annotations

import json
import re
import string
from typing import Any

from ..errors import MissingExtra, UsageError
from ..prompt_file import from_double_braces
from .provenance import PromptExport

_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def double_braces(template: str) -> str:
    """``{var}`` placeholders as ``{{var}}``; f-string escapes (``{{``, ``}}``) as the literal braces they stand for."""
    out = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        out.append(literal)
        if field is not None:
            out.append("{{" + field + "}}")
    return "".join(out)


def registry_prompt(found: PromptExport) -> tuple[str, str | list[dict[str, str]]]:
    """``("chat", messages)`` for a scored template, ``("text", prompt)`` without one; variables as ``{{var}}``.

    Raises:
        UsageError: a program's set of prompts (registries take one prompt; export it as JSON).
    """
    if found.prompts is not None:
        raise UsageError("a program's prompts export as text, json or langchain, not to a prompt registry "
                         "(one prompt each)",
                         hint="use tprompt export RUN --format json (every prompt by name, with provenance)")
    if found.template is None:
        return "text", found.prompt
    return "chat", [{"role": m.role, "content": double_braces(m.content)}
                    for m in found.template.messages if m.role != "system" or m.content.strip()]


def default_name(found: PromptExport) -> str:
    """A registry name for the export: ``tprompt-<target task>`` with characters registries refuse replaced."""
    target = (found.provenance.get("tasks") or {}).get("target") or "prompt"
    return _NAME.sub("-", f"tprompt-{target}").strip("-.")


def provenance_tags(found: PromptExport) -> dict[str, str]:
    """The provenance as registry tags (strings): scalars as text, nested values as JSON, under ``tprompt.``."""
    tags = {"tprompt.prompt_id": found.prompt_id}
    for key, value in found.provenance.items():
        if value is None:
            continue
        tags[f"tprompt.{key}"] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return tags


def langfuse_prompt(found: PromptExport, name: str | None = None, labels: list[str] | None = None) -> dict[str, Any]:
    """Langfuse's prompt JSON (``POST /api/public/v2/prompts``): name, type, prompt, config, labels, tags."""
    kind, prompt = registry_prompt(found)
    return {"name": name or default_name(found), "type": kind, "prompt": prompt,
            "config": {"tprompt": {"prompt_id": found.prompt_id, **found.provenance}},
            "labels": list(labels or []), "tags": ["tprompt"]}


def register_mlflow(found: PromptExport, name: str | None = None, alias: str | None = None) -> tuple[str, int]:
    """Register the export as a new version of an MLflow prompt (tracking URI: ``MLFLOW_TRACKING_URI``).

    Returns ``(name, version)``.

    Raises:
        MissingExtra: MLflow is not installed.
        UsageError: the registry refused (an unreachable tracking server, a bad name).
    """
    try:
        import mlflow
    except ImportError as exc:
        raise MissingExtra("registering a prompt in MLflow needs MLflow", hint="pip install 'tprompt[mlflow]'") from exc
    import logging

    # MLflow logs its wait for the new version at INFO on stderr; tprompt reports the outcome itself.
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    name = name or default_name(found)
    _kind, template = registry_prompt(found)
    p = found.provenance
    message = f"tprompt run {p.get('run_id')}: {p.get('stage')} stage, step {p.get('step')}, objective {p.get('objective')}"
    try:
        version = mlflow.genai.register_prompt(name=name, template=template, commit_message=message,
                                               tags=provenance_tags(found))
        if alias:
            mlflow.genai.set_prompt_alias(name, alias=alias, version=version.version)
    except Exception as exc:  # MLflow raises MlflowException, requests' errors and more: one line for each
        raise UsageError(f"MLflow ({mlflow.get_tracking_uri()}) refused prompt {name!r}: {str(exc).splitlines()[0]}",
                         hint="check MLFLOW_TRACKING_URI and the prompt name") from exc
    return name, int(version.version)


__all__ = ("default_name", "double_braces", "from_double_braces", "langfuse_prompt", "provenance_tags",
           "register_mlflow", "registry_prompt")
