"""headrace's version, in a module of its own so the CLI and the webserver read it cheaply."""

from __future__ import annotations

__version__ = "0.1.0"
