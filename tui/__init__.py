"""The Textual terminal UI (``tprompt ui``): runs browser, run view, transcripts, fork.

Only front ends import this package; the core never does.
"""

from .app import TPromptApp, create_app, export_screenshot

__all__ = ("TPromptApp", "create_app", "export_screenshot")
