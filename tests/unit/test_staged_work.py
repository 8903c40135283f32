"""One shape for a staged work: what the de-bag returns is what the ledger's ``debagged`` detail holds and what a
resumed attempt reads back (``StagedWork.to_detail``/``from_detail``, ``history.staged_works``)."""

from __future__ import annotations

from pathlib import Path

from harness.bags import make_bdrc_bag_zip
from onprem.finisher.debag.archive import debag_archive
from onprem.finisher.debag.model import DebagSettings, StagedWork
from onprem.finisher.ledger.store import Ledger, Phase, ingest_key
from onprem.finisher.work.history import staged_works

RID = "W1NLM4700"


def test_a_debagged_work_crosses_the_ledger_history_unchanged(tmp_path: Path) -> None:
    zip_path = make_bdrc_bag_zip(tmp_path / "bags", rids=[RID])
    result = debag_archive(zip_path, RID, tmp_path / "staging", DebagSettings(workers=1, fsync=False))
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    key = ingest_key(str(zip_path), 1, 1)
    ledger.register_ingest(key, RID, str(zip_path), 1)
    ledger.advance(key, Phase.DEBAGGED, works=[work.to_detail() for work in result.works])
    assert staged_works(ledger.get(key)) == result.works
    assert result.works[0].bag and result.works[0].fixity_checked and result.works[0].files > 0


def test_a_debagged_entry_of_an_older_ledger_reads_with_its_rid_and_path() -> None:
    staged = StagedWork.from_detail({"work_rid": RID, "path": "/srv/staging/works/0123/W1NLM4700"})
    assert staged == StagedWork(RID, Path("/srv/staging/works/0123/W1NLM4700"))
    assert (staged.fixity_checked, staged.algorithms, staged.files) == (False, (), 0)


def test_a_history_without_a_debagged_entry_has_no_staged_work() -> None:
    assert staged_works(None) == []
