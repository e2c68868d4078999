"""A run's best prompt out of tprompt: the export (prompt + provenance) built from a run's folded state.

Above the stores: it reads a :class:`~tprompt.stores.RunState`, the stores never call it.
"""

from ..prompt_file import EXPORT_FORMAT, EXPORT_FORMAT_VERSION, read_prompt_file
from .provenance import FORMATS, STAGES, PromptExport, default_stage, export_prompt, lost_to_original, public_url

__all__ = (
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "FORMATS",
    "STAGES",
    "PromptExport",
    "default_stage",
    "export_prompt",
    "lost_to_original",
    "public_url",
    "read_prompt_file",
)
