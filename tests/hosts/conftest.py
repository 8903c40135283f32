"""Fixtures of the hosts' tests: three finisher hosts in network namespaces on shaped links, a PostgreSQL cluster
the hosts reach on the services address, a fresh moto server per test (the root namespace, forwarded by DNAT).

Nothing here skips: a machine that cannot make namespaces fails these tests (HostNetworkUnavailable).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.loader import load_environment
from harness.fleet import Fleet
from harness.hosts import HostNetwork
from harness.moto_env import local_aws
from tests.ledger_backends import PostgresCluster, running_cluster

DEV = load_environment("dev")
#: each host's link, both ways: a small work (~0.6 MiB) downloads in ~0.3 s, long enough to be caught mid-work
HOST_RATE_BYTES_PER_S = 2e6
#: short leases and polls: a killed or cut-off host's lease and message come back in seconds
HOST_SETTINGS = {
    "FINISHER_VISIBILITY_TIMEOUT": "3", "FINISHER_WAIT_TIME_SECONDS": "1", "FINISHER_LEASE_BUSY_DELAY": "1",
    "FINISHER_BACKOFF_BASE": "1", "FINISHER_BACKOFF_MAX": "2", "FINISHER_DRAIN_IDLE_LIMIT": "30",
    "FINISHER_GRACE_PERIOD": "2", "FINISHER_MIN_FREE_BYTES": "0", "FINISHER_FETCH_PART_SIZE": str(128 * 1024),
    "FINISHER_FETCH_CONCURRENCY": "2", "FINISHER_DEBAG_WORKERS": "2", "FINISHER_RESTORE_WAIT_INTERVAL": "1",
    "FINISHER_LEDGER_LOCK_TIMEOUT": "20", "FINISHER_BACKLOG_PRIOR_RATE": "36000",
}


@pytest.fixture(scope="module")
def host_network() -> Iterator[HostNetwork]:
    with HostNetwork(3, rate_bytes_per_s=HOST_RATE_BYTES_PER_S) as network:
        yield network


@pytest.fixture(scope="module")
def hosts_cluster(host_network: HostNetwork) -> Iterator[PostgresCluster]:
    """PostgreSQL on loopback and on the services address, trusting the hosts' /24."""
    subnet = ipaddress.IPv4Network(f"{host_network.services_address}/24", strict=False)
    with running_cluster(("127.0.0.1", host_network.services_address), (str(subnet),)) as cluster:
        yield cluster


@pytest.fixture
def fleet(tmp_path: Path, host_network: HostNetwork, hosts_cluster: PostgresCluster) -> Iterator[Fleet]:
    """A fresh moto server and ledger database; finishers on the three hosts."""
    local = hosts_cluster.new_database()
    name = local.rsplit("/", 1)[1]
    with local_aws(DEV, config_dir=tmp_path / "aws") as aws:
        try:
            yield Fleet(aws, tmp_path, ledger_url=hosts_cluster.url(name, host=host_network.services_address),
                        local_ledger_url=local, network=host_network, settings=HOST_SETTINGS)
        finally:  # a failed test leaves no finisher behind
            for host in host_network.hosts:
                host_network.restore(host)
                host_network.kill_all(host)
