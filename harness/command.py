"""The demo command, ``python -m harness`` (``make demo``): the development harness, never part of the finisher."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console

from harness.moto_env import LocalAws, NonLoopbackEndpoint
from harness.run import DemoOptions, run_demo


def _wait_for_ctrl_c(console: Console) -> Callable[[LocalAws], None]:
    def wait(aws: LocalAws) -> None:
        console.print(f"\n[bold]moto server kept at {aws.endpoint_url}[/bold] — e.g.\n"
                      f"  AWS_ENDPOINT_URL={aws.endpoint_url} AWS_ACCESS_KEY_ID=testing "
                      f"AWS_SECRET_ACCESS_KEY=testing aws sqs list-queues --region {aws.default_region}\n"
                      "Ctrl-C stops it.")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            console.print("stopping the moto server")

    return wait


def demo_command(
    out: Path | None = typer.Option(None, "--out", help="demo directory (default ./demo-out/<UTC timestamp>)"),
    keep_server: bool = typer.Option(False, "--keep-server", help="keep the moto server running until Ctrl-C"),
    environment_name: str = typer.Option("dev", "--env", help="the environment whose resources the local server "
                                                              "mirrors (still loopback only)"),
) -> None:
    """Run the whole pipeline end to end on a local moto server (no AWS account needed)."""
    console = Console(highlight=False, soft_wrap=True)
    try:
        outcome = run_demo(DemoOptions(out_dir=out, keep_server=keep_server, environment_name=environment_name),
                           console,
                           wait_for_exit=_wait_for_ctrl_c(console))
    except (NonLoopbackEndpoint, FileExistsError) as err:
        console.print(f"[red]demo refused: {err}[/red]")
        raise typer.Exit(2) from err
    raise typer.Exit(0 if outcome.ok else 1)


def main() -> None:
    typer.run(demo_command)
