"""The finisher's image, run: as its build-time UID, read-only root, separate mounts, `docker stop` mid-sync."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from contract import archive_relpath_for_rid
from onprem.finisher.ledger.store import Ledger
from tests.container.conftest import IMAGE, RID, Site, docker, log_events

#: the image's size budget (the figure is in the README's container paragraph)
IMAGE_BUDGET_BYTES = 300 * 1000 * 1000

#: a sync script that notes each call in /state, waits, then runs the image's own: `docker stop` lands mid-sync
SLOW_SYNC = """#!/bin/bash
echo "$$ $*" >> /state/sync-calls.txt
sleep "${SLOW_SYNC_S:-0}"
exec /opt/bdrc-restore/bin/syncOneWork.sh "$@"
"""


def owners(root: Path) -> set[tuple[int, int]]:
    return {(path.stat().st_uid, path.stat().st_gid) for path in [root, *root.rglob("*")]}


def test_the_image_fits_its_size_budget() -> None:
    size = int(docker("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout)
    print(f"{IMAGE}: {size / 1e6:.0f} MB")  # shown with -s; the README quotes it
    assert size <= IMAGE_BUDGET_BYTES, f"{IMAGE} is {size / 1e6:.0f} MB, over {IMAGE_BUDGET_BYTES / 1e6:.0f} MB"


def test_the_image_holds_the_product_and_no_credentials(site: Site) -> None:
    found = docker("run", "--rm", "--read-only", "--entrypoint", "bash", IMAGE, "-c",
                   "ls /opt/bdrc-restore; echo ---; env; echo ---; ls -A /home/finisher; echo ---; id -u; "
                   "echo ---; python3 -c 'import harness' 2>&1 | tail -1")
    contents, environ, home, uid, harness = found.stdout.split("---\n")
    assert set(contents.split()) == {"README.md", "bin", "config", "contract", "onprem", "pyproject.toml",
                                     "requirements"}
    assert "AWS_ACCESS_KEY_ID" not in environ and "AWS_SECRET_ACCESS_KEY" not in environ
    assert ".aws" not in home.split() and uid.strip() == str(site.uid)
    assert "No module named 'harness'" in harness


#: in the image, the .py files of the product and its heavy dependencies without their compiled bytecode
UNCOMPILED = """
import importlib, importlib.util, pathlib
for name in ("onprem", "contract", "config", "boto3", "botocore", "s3transfer", "sqlalchemy", "pydantic", "typer",
             "rich", "alembic", "psycopg"):
    root = pathlib.Path(importlib.import_module(name).__file__).parent
    for source in root.rglob("*.py"):
        if not pathlib.Path(importlib.util.cache_from_source(str(source))).is_file():
            print(source)
"""


def test_the_image_starts_from_bytecode_compiled_at_build_time() -> None:
    """Nothing may write bytecode at run time (PYTHONDONTWRITEBYTECODE, a read-only root): before, installed with
    --no-compile, every start compiled boto3, SQLAlchemy and pydantic from source (import 2.6 s, now 1.0 s)."""
    # from /, as the console script imports them (the working directory holds the product's sources too)
    found = docker("run", "--rm", "--read-only", "--network", "none", "--workdir", "/", "--entrypoint", "python3",
                   IMAGE, "-c", UNCOMPILED)
    assert found.stdout.split() == []


def test_version_and_status_work_on_a_read_only_root(site: Site) -> None:
    version = site.run("--version")
    assert version.returncode == 0 and version.stdout.startswith("finisher "), version.stderr
    status = site.run("status", "--json")
    assert status.returncode == 0, status.stderr
    assert '"works": []' in status.stdout


def test_a_restored_work_is_drained_into_the_archive_owned_by_the_image_user(site: Site) -> None:
    site.send_work()
    drained = site.run("run", "--drain", timeout=180)
    assert drained.returncode == 0, drained.stderr[-3000:]
    archived = site.host_dir("archive") / archive_relpath_for_rid(RID)
    assert sorted(p.name for p in archived.rglob("*.tif"))
    assert owners(site.host_dir("archive")) == {(site.uid, site.gid)}
    assert site.depth() == {"visible": 0, "in_flight": 0}
    status = site.run("status", RID)
    assert status.returncode == 0 and RID in status.stdout and "synced" in status.stdout, status.stderr


def test_separate_staging_and_archive_mounts_link_the_works_staged_under_the_archive(site: Site) -> None:
    """The works' staging folder defaults to /archive/.bdrc-staging: separate mounts no longer copy; with the
    folder set on the staging mount (FINISHER_ARCHIVE_STAGING_DIR) the sync falls back to a copy, logged once."""
    site.send_work()
    drained = site.run("run", "--drain", timeout=180, FINISHER_LOG_LEVEL="DEBUG")
    assert drained.returncode == 0, drained.stderr[-3000:]
    events = log_events(drained.stderr)
    synced = [e for e in events if e["message"].startswith(f"synced {RID}")]
    assert len(synced) == 1 and "copy_mode=link" in synced[0]["message"], synced
    assert not [e for e in events if "hard links from " in e["message"]]
    hidden = site.host_dir("archive") / ".bdrc-staging"
    assert hidden.is_dir() and not [p for p in hidden.rglob("*") if p.is_file()]  # the staged copy is gone

    other = "W1NLM4701"
    site.send_work(other)
    drained = site.run("run", "--drain", timeout=180, FINISHER_LOG_LEVEL="DEBUG",
                       FINISHER_ARCHIVE_STAGING_DIR="/staging")
    assert drained.returncode == 0, drained.stderr[-3000:]
    events = log_events(drained.stderr)
    synced = [e for e in events if e["message"].startswith(f"synced {other}")]
    assert len(synced) == 1 and "copy_mode=copy" in synced[0]["message"], synced
    fallback = [e for e in events if "hard links from /staging/" in e["message"]]
    assert len(fallback) == 1 and fallback[0]["work_rid"] == other, fallback
    assert (site.host_dir("archive") / archive_relpath_for_rid(other)).is_dir()


def test_staging_and_archive_in_one_mount_are_hard_linked(site: Site) -> None:
    data = site.host_dir("data")
    for name in ("archive", "staging"):
        (data / name).mkdir(parents=True)
    for path in (data, data / "archive", data / "staging"):
        os.chown(path, site.uid, site.gid)
    site.send_work()
    drained = site.run("run", "--drain", timeout=180, FINISHER_ARCHIVE_ROOT="/data/archive",
                       FINISHER_STAGING_DIR="/data/staging",
                       volumes={str(data): "/data", str(site.host_dir("state")): "/state"})
    assert drained.returncode == 0, drained.stderr[-3000:]
    synced = [e for e in log_events(drained.stderr) if e["message"].startswith(f"synced {RID}")]
    assert len(synced) == 1 and "copy_mode=link" in synced[0]["message"], synced


def test_docker_stop_mid_sync_exits_within_the_grace_and_the_work_is_synced_once(site: Site) -> None:
    slow = site.root / "slow-sync"
    slow.mkdir()
    (slow / "syncOneWork.sh").write_text(SLOW_SYNC)
    (slow / "syncOneWork.sh").chmod(0o755)
    work = site.send_work()
    calls = site.host_dir("state") / "sync-calls.txt"
    name = site.start("run", extra_volumes={str(slow): "/opt/slow"}, FINISHER_SYNC_SCRIPT="/opt/slow/syncOneWork.sh",
                      SLOW_SYNC_S="60", FINISHER_GRACE_PERIOD="2")
    deadline = time.monotonic() + 90
    while not calls.is_file():
        assert time.monotonic() < deadline, docker("logs", name).stderr[-3000:]
        time.sleep(0.2)
    # the live view from another container through the state volume, the work mid-sync in the running one
    view = site.run("top", "--json", timeout=60)
    assert view.returncode == 0, view.stderr[-3000:]
    slots = {slot["work_rid"]: slot for slot in json.loads(view.stdout)["slots"]}
    assert RID in slots and slots[RID]["phase"] == "debagged", view.stdout  # de-bagged, syncing
    started = time.monotonic()
    docker("stop", "--time", "20", name, timeout=60)
    stopped_in = time.monotonic() - started
    exit_code = docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip()
    assert stopped_in < 20 and exit_code == "0", (stopped_in, exit_code, docker("logs", name).stderr[-3000:])

    # the stopped finisher leaves its message in flight and its lease held until they expire (10 s here): the
    # restart's drain waits for the redelivery instead of giving up after the default 5 s of idle receives
    drained = site.run("run", "--drain", timeout=180, FINISHER_DRAIN_IDLE_LIMIT="40")
    assert drained.returncode == 0, drained.stderr[-3000:]
    assert site.depth() == {"visible": 0, "in_flight": 0}
    record = Ledger(f"sqlite:///{site.host_dir('state') / 'ledger.sqlite'}").get(work.idempotency_key)
    assert record is not None and record.phase == "synced"
    assert [e["event"] for e in record.history].count("synced") == 1, record.history
    assert (site.host_dir("archive") / archive_relpath_for_rid(RID)).is_dir()
