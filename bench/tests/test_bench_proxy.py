"""harness.proxy: the shaping proxy forwards bytes intact, paces each connection, and cuts the ones it is told to."""

from __future__ import annotations

import gc
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from harness.proxy import RatePacer, ShapingProxy

PAYLOAD = os.urandom(300_000)


class _SendPayload(socketserver.BaseRequestHandler):
    """Reads one line (the request), answers with PAYLOAD, closes."""

    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(PAYLOAD)


@pytest.fixture
def upstream() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SendPayload)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _fetch(port: int) -> tuple[bytes, bool]:
    """(bytes received, whether the connection was reset) for one request through ``port``."""
    received = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET\n")
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            return bytes(received), True
    return bytes(received), False


def test_rate_capped_proxy_forwards_every_byte_unchanged(upstream: int) -> None:
    with ShapingProxy("127.0.0.1", upstream, rate_bytes_per_s=20e6) as proxy:
        body, reset = _fetch(proxy.port)
        stats = proxy.stats()
    assert body == PAYLOAD
    assert not reset
    assert stats.connections == 1
    assert stats.bytes_to_client == len(PAYLOAD)
    assert stats.bytes_to_server == len(b"GET\n")


def test_the_link_cap_is_shared_by_every_connection(upstream: int) -> None:
    """Four connections at 40 MB/s each on a 4 MB/s link take as long as their bytes at 4 MB/s, not a quarter."""
    with ShapingProxy("127.0.0.1", upstream, rate_bytes_per_s=40e6, link_bytes_per_s=4e6) as proxy:
        started = time.monotonic()
        threads = [threading.Thread(target=_fetch, args=(proxy.port,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        elapsed = time.monotonic() - started
        stats = proxy.stats()
    assert stats.bytes_to_client == 4 * len(PAYLOAD)
    # 1.2 MB at 4 MB/s = 0.3 s, less the link's burst credit of 0.02 s; per connection alone it would be 0.0075 s
    assert elapsed >= 4 * len(PAYLOAD) / 4e6 - 0.03


def test_pacer_spaces_chunks_at_the_capped_rate() -> None:
    pacer = RatePacer(now=100.0, burst_s=0.0)
    assert pacer.delay(100.0, 1_000_000, rate=10e6) == pytest.approx(0.1)
    assert pacer.delay(100.1, 1_000_000, rate=10e6) == pytest.approx(0.1)
    # a consumer that is slower than the cap is never delayed
    assert pacer.delay(105.0, 1_000_000, rate=10e6) == pytest.approx(0.1)
    assert pacer.delay(106.0, 1_000, rate=10e6) == pytest.approx(0.0001)


def test_pacer_gives_an_idle_connection_only_the_burst_credit() -> None:
    pacer = RatePacer(now=0.0, burst_s=0.02)
    # after 10 s idle, 1 MB at 10 MB/s may not leave in less than 0.1 s - 0.02 s of credit
    assert pacer.delay(10.0, 1_000_000, rate=10e6) == pytest.approx(0.08)


def test_cut_mode_resets_the_connection_after_the_given_bytes(upstream: int) -> None:
    with ShapingProxy("127.0.0.1", upstream, cut_after_bytes=100_000) as proxy:
        body, reset = _fetch(proxy.port)
        stats = proxy.stats()
    assert reset
    assert body == PAYLOAD[:100_000]
    assert stats.cuts == 1


def test_cut_mode_cuts_only_the_first_connections_when_limited(upstream: int) -> None:
    with ShapingProxy("127.0.0.1", upstream, cut_after_bytes=50_000, cut_connections=1) as proxy:
        first, first_reset = _fetch(proxy.port)
        second, second_reset = _fetch(proxy.port)
        stats = proxy.stats()
    assert (len(first), first_reset) == (50_000, True)
    assert (second, second_reset) == (PAYLOAD, False)
    assert (stats.connections, stats.cuts) == (2, 1)


def test_settings_changed_while_running_apply_to_new_connections(upstream: int) -> None:
    with ShapingProxy("127.0.0.1", upstream) as proxy:
        assert _fetch(proxy.port) == (PAYLOAD, False)
        proxy.cut_after_bytes = 10_000
        assert _fetch(proxy.port) == (PAYLOAD[:10_000], True)


def test_proxy_listens_on_loopback_and_stop_closes_the_port(upstream: int) -> None:
    proxy = ShapingProxy("127.0.0.1", upstream).start()
    assert proxy.url == f"http://127.0.0.1:{proxy.port}"
    port = proxy.port
    proxy.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_stop_ends_every_connection_handler_before_its_loop_closes(upstream: int) -> None:
    """A connection paced mid-payload at stop leaves no handler to be destroyed with the loop (it raised "Event loop
    is closed" in whatever thread collected it: an unraisable exception whose traceback raced other threads)."""
    unraisable: list[str] = []
    previous, sys.unraisablehook = sys.unraisablehook, lambda hook: unraisable.append(repr(hook.exc_value))
    try:
        with socket.create_connection(("127.0.0.1", (proxy := ShapingProxy(
                "127.0.0.1", upstream, rate_bytes_per_s=20_000).start()).port), timeout=10) as sock:
            sock.sendall(b"GET\n")
            sock.recv(1024)  # the payload is flowing, paced: the handler is waiting on its pacer
            proxy.stop()
        gc.collect()
    finally:
        sys.unraisablehook = previous
    assert unraisable == []
