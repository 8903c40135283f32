"""The ledger's schema revision on both backends: a fresh ledger made at the head, older and newer schemas refused
with both revisions named, ``finisher ledger upgrade`` (Alembic) adopting a ledger made before revisions, the
migrations equal to the models, and MySQL/MariaDB refused before any connection."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from contract import RestoredWork
from onprem.finisher.cli import app
from onprem.finisher.ledger.engine import LedgerBackendUnsupported, ledger_location
from onprem.finisher.ledger.migrate import MIGRATIONS, upgrade
from onprem.finisher.ledger.models import Base
from onprem.finisher.ledger.schema import HEAD, REVISIONS, VERSION_TABLE, LedgerSchemaMismatch, mismatch
from onprem.finisher.ledger.store import Ledger
from onprem.finisher.logs import reset_logging


def make_work() -> RestoredWork:
    return RestoredWork.build(collection="NLM", bucket="staging.nlm", key="Archive0/00/W1NLM4700/W1NLM4700.bag.zip",
                              region="us-east-1", size=10, etag="abc", version_id="v1",
                              event_time=datetime(2026, 11, 29, tzinfo=UTC), source_event_id="e1")


def revision(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        found = list(connection.execute(sa.select(VERSION_TABLE.c.version_num)).scalars())
    engine.dispose()
    return found


def set_revision(url: str, version: str | None) -> None:
    """The version row replaced (None: the version table dropped, as a ledger made before revisions)."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.begin() as connection:
        if version is None:
            VERSION_TABLE.drop(connection)
        else:
            connection.execute(sa.update(VERSION_TABLE).values(version_num=version))
    engine.dispose()


def shape(url: str) -> dict[str, object]:
    """Every table's columns (name, type, nullable), indexes and unique constraints, as the database reports them."""
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    with engine.connect() as connection:
        inspector = sa.inspect(connection)
        found = {table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(table)],
            sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)),
            sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
        ) for table in sorted(inspector.get_table_names())}
    engine.dispose()
    return found


def test_a_fresh_ledger_is_created_at_the_head_revision(ledger_url: str) -> None:
    Ledger(ledger_url).close()
    assert revision(ledger_url) == [HEAD]


def test_a_newer_schema_is_refused_naming_both_revisions(ledger_url: str) -> None:
    Ledger(ledger_url).close()
    set_revision(ledger_url, "0002")
    with pytest.raises(LedgerSchemaMismatch) as caught:
        Ledger(ledger_url)
    assert str(caught.value) == (f"ledger {ledger_location(ledger_url)}: schema revision 0002 is newer than this "
                                 f"finisher's {HEAD}: run a finisher that knows 0002")
    with pytest.raises(LedgerSchemaMismatch):
        upgrade(ledger_url)  # never downgraded
    assert revision(ledger_url) == ["0002"]


def test_an_older_known_revision_is_named_older_with_the_upgrade_to_run() -> None:
    assert mismatch("0001", known=("0001", "0002")) == (
        "schema revision 0001 is older than this finisher's 0002: run `finisher ledger upgrade`")
    assert mismatch("0002", known=("0001", "0002")) is None


def test_a_ledger_made_before_revisions_is_refused_then_upgraded_with_its_rows(ledger_url: str) -> None:
    made = Ledger(ledger_url)
    made.register(make_work(), make_work().to_body())
    made.close()
    set_revision(ledger_url, None)
    with pytest.raises(LedgerSchemaMismatch, match=f"schema revision none .*this finisher knows {HEAD}: run "
                                                   "`finisher ledger upgrade`"):
        Ledger(ledger_url)
    done = upgrade(ledger_url)
    assert (done.before, done.after, done.changed) == (None, HEAD, True)
    ledger = Ledger(ledger_url)
    assert [r.work_rid for r in ledger.works()] == ["W1NLM4700"]
    ledger.close()
    assert upgrade(ledger_url).changed is False


def test_the_migrations_make_exactly_the_models_tables(new_ledger_url: object) -> None:
    migrated, created = new_ledger_url(), new_ledger_url()  # type: ignore[operator]
    upgrade(migrated)
    Ledger(created).close()
    assert shape(migrated) == shape(created)
    assert set(shape(created)) == {*Base.metadata.tables, VERSION_TABLE.name}


def test_the_known_revisions_are_the_migrations_folders_line() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    line = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    assert tuple(line) == REVISIONS
    assert script.get_heads() == [HEAD]


@pytest.mark.parametrize("url", ["mysql+pymysql://finisher@archive-db/bdrc_restore",
                                 "mariadb+mariadbconnector://finisher:secret@archive-db/bdrc_restore"])
def test_mysql_and_mariadb_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(LedgerBackendUnsupported) as caught:
        Ledger(url)
    message = str(caught.value)
    assert message.startswith("ledger m") and "is not supported as the ledger" in message
    assert "secret" not in message and "\n" not in message


def test_another_postgresql_driver_is_refused() -> None:
    with pytest.raises(LedgerBackendUnsupported, match="the psycopg2 driver is not supported"):
        Ledger("postgresql+psycopg2://finisher@archive-db/bdrc_restore")


@pytest.fixture
def cli_env(tmp_path: Path, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("FINISHER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("FINISHER_LEDGER_URL", ledger_url)
    monkeypatch.setenv("FINISHER_LOG_FORMAT", "json")
    yield ledger_url
    reset_logging()


def test_finisher_ledger_upgrade_names_both_revisions(cli_env: str) -> None:
    first = CliRunner().invoke(app, ["ledger", "upgrade"])
    again = CliRunner().invoke(app, ["ledger", "upgrade"])
    location = ledger_location(cli_env)
    assert (first.exit_code, again.exit_code) == (0, 0), first.output
    assert f"ledger {location}: schema revision none → {HEAD}" in first.stdout
    assert f"ledger {location}: schema revision {HEAD}, already current" in again.stdout


def test_finisher_refuses_to_start_on_a_newer_schema_in_one_line(cli_env: str) -> None:
    Ledger(cli_env).close()
    set_revision(cli_env, "0002")
    refused = CliRunner().invoke(app, ["status"])
    assert refused.exit_code == 3
    lines = [line for line in refused.stderr.splitlines() if line.startswith("ledger ")]
    assert lines == [f"ledger {ledger_location(cli_env)}: schema revision 0002 is newer than this finisher's "
                     f"{HEAD}: run a finisher that knows 0002"]
