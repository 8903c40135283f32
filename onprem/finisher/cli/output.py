"""What every command prints through: the two consoles, plain-text messages and table cells, the exit codes, and the
ledger's failure as one line. The command modules (``app.py``, ``restore.py``, ``dlq.py``, ``watch.py``) share it.

Every message a person reads goes through ``say`` or ``cells`` (plain ``rich.text.Text``, never parsed as markup):
a file or RID containing ``[/draft]`` or ``[b]`` is printed as it is.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import typer
from rich.console import Console
from rich.text import Text

from onprem.finisher.errors import LedgerUnavailable

#: exit code of a command whose ledger cannot be used (corrupt, read-only, locked)
EXIT_LEDGER_UNAVAILABLE = 3
#: ``run --drain`` could not read a queue (permissions, endpoint): its messages were not looked at
EXIT_QUEUE_UNREACHABLE = 4


def err_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)  # a message stays one line, whatever its length


def out_console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def say(console: Console, message: str, style: str = "") -> None:
    """The one way a message reaches a person: printed as plain text, whatever brackets it holds."""
    console.print(Text(message, style=style))


def cells(*values: object) -> list[Text]:
    """A table row of plain text cells (a cell string would be parsed as markup)."""
    return [Text("" if value is None else str(value)) for value in values]


def ledger_errors_in_one_line(command: Callable[..., None]) -> Callable[..., None]:
    """A command whose ledger cannot be used prints that as one line and exits 3, without a traceback."""

    @functools.wraps(command)
    def run_command(*args: object, **kwargs: object) -> None:
        try:
            command(*args, **kwargs)
        except LedgerUnavailable as err:
            say(err_console(), str(err), "red")
            raise typer.Exit(EXIT_LEDGER_UNAVAILABLE) from err

    return run_command
