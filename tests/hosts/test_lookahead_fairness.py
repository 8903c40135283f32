"""Look-ahead never starves another host: finishers with the default settings on one backlog share it evenly.

Each finisher runs on its own host (a namespace, its link capped at the same rate), so equal works take each host
the same time and the split shows only what the finishers hold ahead of their free slots (issue 20; before, as
drains: the first finisher to receive held the backlog, 11/1 on 12 works with two hosts, 0/2/10 with three; as
runs 10/2 and 3/2/7; with a spare per two slots and a scan on every receive 2/5/5: a host that freed a slot
received the whole visible backlog and put it back after ranking it, so a host idle in its long poll missed it).
The finishers are running before the backlog arrives, so no host starts late. The expiry order this must keep is
tests/integration/test_backlog_order.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from harness.bags import SampleSpec
from harness.fleet import Fleet

WORKS = 12


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.1)


def drain_backlog(fleet: Fleet, names: list[str], first: int) -> dict[str, int]:
    """Send WORKS equal works to the running finishers of ``names``; each host's share once all are synced."""
    before = fleet.synced_by()
    messages = [fleet.stage(SampleSpec("NLM", (f"W1NLM{number}",), image_groups=2, images_per_group=4,
                                       image_bytes=128 * 1024), send=False)[1]
                for number in range(first, first + WORKS)]
    for message in messages:  # the backlog arrives at once: no host sees it first by polling at the right time
        fleet.send(message)
    wait_for(lambda: sum(fleet.sync_lines().values()) >= first - 6100 + WORKS and fleet.queued() == 0, 90,
             f"{WORKS} works synced")
    return {name: len(works) - len(before[name]) for name, works in fleet.synced_by().items() if name in names}


@pytest.mark.parametrize("hosts", [2, 3])
def test_finishers_with_default_settings_split_a_backlog_of_12_equal_works_evenly(fleet: Fleet, hosts: int) -> None:
    fleet.settings = {}  # the defaults: look-ahead 8, 2 slots, the prior rate, the 900 s visibility …
    names = fleet.host_names[:hosts]
    processes = {name: fleet.start(name, ["run"]) for name in names}
    wait_for(lambda: all("finisher started" in fleet.log(name) for name in names), 60, "the finishers started")
    shares = drain_backlog(fleet, names, 6100)
    print(f"12 works on {hosts} hosts: {shares}")

    assert all(process.poll() is None for process in processes.values()), "a finisher ended early"
    assert sorted(fleet.sync_lines().values()) == [1] * WORKS  # every work once, none twice
    # measured: 3 hosts 4/4/4 in 15 runs of 15, 10 of them with a busy loop on one core (before: a spare per two
    # slots and a scan on every receive: 2/5/5 and 3/7/2 in 3 runs of 6; a spare per slot 5/5/2; the whole look-ahead
    # 3/2/7)
    assert sorted(shares) == names and all(abs(share - WORKS // hosts) <= 1 for share in shares.values()), shares
    assert fleet.dead() == 0
