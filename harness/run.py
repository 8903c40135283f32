"""``python -m harness`` (``make demo``): the whole pipeline on a local moto server, each step printed, exit 0 only
when every work is synced and its archive copy re-hashes to its bag's manifest."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.text import Text

from config.loader import load_environment
from harness.bags import SampleSpec, build_sample_zip
from harness.moto_env import LocalAws, local_aws, refuse_configured_endpoints
from harness.pipeline import (
    FinisherPaths,
    StagedObject,
    deliver_restore_events,
    expected_works,
    finisher_stdout,
    pending_messages,
    prepare_out_dir,
    run_finisher,
    stage_sample,
)
from harness.report import archive_tree, human_bytes
from harness.verify import WorkVerification, verify_work_in_archive
from harness.work_status import request_restore_args, status_problems

STEPS = 7
#: the finisher logs as text for people (JSON when its stderr is not a terminal otherwise)
TEXT_LOGS = {"FINISHER_LOG_FORMAT": "text"}
#: bagit logs a line per tag file it verifies: kept in finisher.log, not on the screen
BAGIT_CHATTER = "Verifying checksum for file"
#: the demo's four zips, one work each (a staging key holds its own work only): two in the FPL bucket
DEMO_SPECS = (
    SampleSpec("NLM", ("W1NLM4700",)),
    SampleSpec("FPL", ("W1FPL2025",)),
    SampleSpec("FPL", ("W1FPL2026",)),
    SampleSpec("BDRC", ("W22084",), image_groups=3),
)


@dataclass(frozen=True)
class DemoOptions:
    out_dir: Path | None = None
    keep_server: bool = False
    environment_name: str = "dev"
    specs: tuple[SampleSpec, ...] = DEMO_SPECS
    drain_timeout_s: float = 90.0


@dataclass(frozen=True)
class DemoOutcome:
    out_dir: Path
    works: int
    verified: tuple[WorkVerification, ...]
    problems: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.problems and self.works > 0 and all(v.ok for v in self.verified)

    @property
    def bytes(self) -> int:
        return sum(v.bytes_checked for v in self.verified)


def shown(path: Path) -> Path:
    """``path`` relative to the current directory when it is below it (shorter lines)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def default_out_dir() -> Path:
    return Path("demo-out") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_demo(options: DemoOptions, console: Console | None = None,
             wait_for_exit: Callable[[LocalAws], None] | None = None) -> DemoOutcome:
    """Run the demo; ``wait_for_exit`` (with ``keep_server``) is called before the server stops."""
    console = console or Console()
    refuse_configured_endpoints(os.environ)
    started = time.monotonic()
    out_dir = (options.out_dir or default_out_dir()).resolve()
    paths = prepare_out_dir(out_dir)
    environment = load_environment(options.environment_name)
    step = _stepper(console)
    console.print(f"[bold]bdrc-restore demo[/bold] — environment [cyan]{environment.name}[/cyan], "
                  f"everything under {shown(out_dir)}")
    with local_aws(environment, config_dir=out_dir / "aws") as aws:
        step("moto server", f"{aws.endpoint_url} (loopback only, fake credentials, your AWS config hidden)")
        regions = environment.regions
        step("resources", f"{sum(len(r.buckets) for r in regions)} versioned staging buckets, "
                          f"{len(regions)} work queues + DLQs (maxReceiveCount {environment.queues.max_receive_count})"
                          f", {len(regions)} failure queues, {len(regions)} idempotency tables, "
                          f"{len(regions)} EventBridge rules — from config/{environment.name}.yaml")
        staged = _stage(aws, options.specs, out_dir / "bags", step, console)
        # no events without restores, no drain without messages; once drained, the ledger and the archive are
        # shown even when the drain failed (they say why)
        problems = _request_restores(aws, paths, staged, step, console)
        problems = problems or _deliver(aws, staged, out_dir / "lambda", step, console)
        verified: tuple[WorkVerification, ...] = ()
        if not problems:
            problems = _drain(aws, paths, options, step, console)
            problems += _status(aws, paths, staged, step, console)
            verified = _verify(paths, staged, console)
        outcome = DemoOutcome(out_dir, sum(len(s.sample.works) for s in staged), verified, tuple(problems),
                              time.monotonic() - started)
        _summary(outcome, console)
        if options.keep_server and wait_for_exit is not None:
            wait_for_exit(aws)
    return outcome


def _stepper(console: Console) -> Callable[[str, str], None]:
    counter = iter(range(1, STEPS + 1))

    def step(title: str, text: str) -> None:
        console.print(f"[bold cyan][{next(counter)}/{STEPS}] {title:<11}[/bold cyan] {text}")

    return step


def _stage(aws: LocalAws, specs: tuple[SampleSpec, ...], bags_dir: Path, step: Callable[[str, str], None],
           console: Console) -> list[StagedObject]:
    staged = [stage_sample(aws, build_sample_zip(bags_dir, spec)) for spec in specs]
    step("bags", f"{len(staged)} zips of {sum(len(s.sample.works) for s in staged)} BagIt bags (sha512), "
                 "uploaded as DEEP_ARCHIVE")
    for item in staged:
        works = ", ".join(f"{w.work_rid} ({w.files} files)" for w in item.sample.works)
        console.print(f"      {item.sample.path.name:<18} {human_bytes(item.sample.size):>9}  {works:<38} "
                      f"→ s3://{item.bucket}/{item.key}")
    return staged


def _request_restores(aws: LocalAws, paths: FinisherPaths, staged: list[StagedObject],
                      step: Callable[[str, str], None], console: Console) -> list[str]:
    args = request_restore_args(aws.environment, staged)
    step("restores", f"finisher {' '.join(args[:1])} … ({aws.environment.restore.tier}, "
                     f"{aws.environment.restore.days} days)")
    result = run_finisher(aws, paths, args, on_line=lambda line: console.print(_quoted(line)), timeout_s=60,
                          extra_env=TEXT_LOGS)
    return [] if result.returncode == 0 else [f"finisher request-restore exited with {result.returncode}"]


def _deliver(aws: LocalAws, staged: list[StagedObject], lambda_dir: Path, step: Callable[[str, str], None],
             console: Console) -> list[str]:
    deliveries = deliver_restore_events(aws, staged, lambda_dir)
    step("events", "\"Object Restore Completed\" → EventBridge rule → notify_restore (real handler) → work queue")
    problems = []
    for delivery in deliveries:
        detail = delivery.event["detail"]
        routed, where = routed_to(delivery.invocation.response) if delivery.invocation.ok else (
            False, str(delivery.invocation.error))
        console.print(f"      {delivery.staged.work_rid:<10} {delivery.staged.region:<15} version "
                      f"{detail['object'].get('version-id', '-')[:8]}…, restored until "
                      f"{detail['restore-expiry-time'][:10]} → [{'green' if routed else 'red'}]{where}[/]")
        if not routed:
            problems.append(f"{delivery.staged.work_rid}: notify_restore did not route it: {where}")
    console.print(f"      [dim]handler logs: {shown(lambda_dir)}[/dim]")
    return problems


def _quoted(line: str) -> Text:
    """A line of the finisher's output, indented under its step (never read as rich markup)."""
    return Text.assemble(("      │ ", "dim"), line)


def routed_to(response: object) -> tuple[bool, str]:
    """Whether the handler routed every record of the event, and a short description of where to."""
    records = response.get("records") if isinstance(response, dict) else None
    if not records:
        return False, json.dumps(response, default=str)[:100]
    parts = []
    for record in records:
        queue = str(record.get("queue_url") or "").rsplit("/", 1)[-1]
        message = str(record.get("message_id") or "")[:8]
        parts.append(f"{record.get('outcome')} to {queue} (message {message}…)" if queue
                     else f"{record.get('outcome')}: {record.get('error')}")
    return all(r.get("outcome") == "routed" for r in records), "; ".join(parts)


def _drain(aws: LocalAws, paths: FinisherPaths, options: DemoOptions, step: Callable[[str, str], None],
           console: Console) -> list[str]:
    step("finisher", f"finisher run --drain (separate process; archive {shown(paths.archive_root)})")
    log_path = paths.root / "finisher.log"
    with log_path.open("w", encoding="utf-8") as log:
        def show(line: str) -> None:
            log.write(line + "\n")
            if BAGIT_CHATTER not in line:
                console.print(_quoted(line))

        result = run_finisher(aws, paths, ["run", "--drain"], on_line=show, timeout_s=options.drain_timeout_s,
                              extra_env=TEXT_LOGS)
    left = {name: count for name, count in pending_messages(aws).items() if count}
    console.print(f"      queues after the drain: {json.dumps(left) if left else 'all empty'}")
    problems = [] if result.returncode == 0 else [f"finisher run --drain exited with {result.returncode}"]
    return problems + [f"{count} message(s) left in {name}" for name, count in left.items()]


def _status(aws: LocalAws, paths: FinisherPaths, staged: list[StagedObject], step: Callable[[str, str], None],
            console: Console) -> list[str]:
    step("result", "finisher status, the archive, and every archive file re-hashed against its bag's manifest")
    with ThreadPoolExecutor(max_workers=2) as pool:  # two reads of the ledger, two process start-ups at once
        table_run = pool.submit(run_finisher, aws, paths, ["status"], timeout_s=60)
        json_run = pool.submit(finisher_stdout, aws, paths, ["status", "--json"])
        table = table_run.result()
        console.print(table.stdout.rstrip(), highlight=False, markup=False)
        try:
            return status_problems(json_run.result(), expected_works(staged))
        except RuntimeError as err:
            return [f"cannot read the ledger: {err}"]


def _verify(paths: FinisherPaths, staged: list[StagedObject], console: Console) -> tuple[WorkVerification, ...]:
    if paths.archive_root.is_dir():
        console.print(archive_tree(paths.archive_root, label=str(shown(paths.archive_root))))
    verified = tuple(verify_work_in_archive(paths.archive_root, w) for s in staged for w in s.sample.works)
    for item in verified:
        mark = "[green]✓[/green]" if item.ok else "[red]✗[/red]"
        console.print(f"      {mark} {item.work_rid:<10} {item.files_checked} files, {human_bytes(item.bytes_checked)}"
                      f" re-hashed (sha512) in {item.archive_dir.relative_to(paths.root)}")
        for problem in item.problems:
            console.print(f"        [red]{problem}[/red]")
    return verified


def _summary(outcome: DemoOutcome, console: Console) -> None:
    good = sum(v.ok for v in outcome.verified)
    for problem in outcome.problems:
        console.print(f"[red]✗ {problem}[/red]")
    colour, mark = ("green", "✓") if outcome.ok else ("red", "✗")
    console.print(f"[bold {colour}]{mark} {good}/{outcome.works} works synced and verified, "
                  f"{human_bytes(outcome.bytes)}, {outcome.seconds:.1f} s[/bold {colour}] — {shown(outcome.out_dir)}")
