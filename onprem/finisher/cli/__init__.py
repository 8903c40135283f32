"""The operator commands (``finisher …``): ``app`` and the console script's ``main``, from ``app.py``."""

from onprem.finisher.cli.app import app, main

__all__ = ["app", "main"]
