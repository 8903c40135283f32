"""A loopback TCP proxy that shapes each connection: a per-connection rate cap, a cap of the whole link (every
connection's bytes together) and a "cut after N bytes" fault.

    with ShapingProxy("127.0.0.1", moto_port, rate_bytes_per_s=40e6) as proxy:
        s3 = boto3.client("s3", endpoint_url=proxy.url, ...)   # every connection capped at 40 MB/s

    with ShapingProxy("127.0.0.1", moto_port, rate_bytes_per_s=40e6, link_bytes_per_s=160e6) as proxy:
        ...  # each connection at 40 MB/s at most, and all of them together at 160 MB/s (a 4 x 40 MB/s link)

    with ShapingProxy("127.0.0.1", moto_port, cut_after_bytes=1 << 20, cut_connections=1) as proxy:
        ...  # the first connection is reset after 1 MiB from the server; later ones pass untouched

It runs its own asyncio loop in a daemon thread, so synchronous code (boto3, tests) can use it. It listens on
127.0.0.1 only, on a free port; the caps apply to the server → client direction (downloads), where S3 is slow
per connection and where a cut connection hurts a download. Settings may be changed while it runs.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass
from types import TracebackType

__all__ = ["ProxyStats", "RatePacer", "ShapingProxy"]

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_BURST_S = 0.02


class RatePacer:
    """When each chunk of one connection may leave so its bytes flow at ``rate`` bytes/s at most.

    An idle connection (a keep-alive one between requests) earns at most ``burst_s`` of credit, so a new request
    on it does not start with a burst above the cap.
    """

    def __init__(self, now: float, burst_s: float = _BURST_S) -> None:
        self.release_at = now
        self.burst_s = burst_s

    def delay(self, now: float, size: int, rate: float) -> float:
        """Seconds to wait before sending ``size`` more bytes at ``now`` (0 when it may go at once)."""
        self.release_at = max(self.release_at, now - self.burst_s) + size / rate
        return max(0.0, self.release_at - now)


@dataclass
class ProxyStats:
    """Counters since start (read them with ``ShapingProxy.stats()``)."""

    connections: int = 0
    bytes_to_client: int = 0
    bytes_to_server: int = 0
    cuts: int = 0


class ShapingProxy:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_host:upstream_port``.

    ``rate_bytes_per_s``: cap of each connection's server → client bytes (None: unlimited).
    ``link_bytes_per_s``: cap of every connection's server → client bytes together (None: unlimited): the link's
    rate, shared by however many connections a client opens.
    ``cut_after_bytes``: reset a connection once that many server → client bytes went through (None: never);
    ``cut_connections``: how many connections get cut (None: every one), counted in the order they are cut.
    """

    def __init__(self, upstream_host: str, upstream_port: int, *, rate_bytes_per_s: float | None = None,
                 link_bytes_per_s: float | None = None, cut_after_bytes: int | None = None,
                 cut_connections: int | None = None) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.rate_bytes_per_s = rate_bytes_per_s
        self.link_bytes_per_s = link_bytes_per_s
        #: the link's pacer, shared by every connection (all run on the proxy's one event loop: no lock needed)
        self._link_pacer = RatePacer(time.monotonic())
        self.cut_after_bytes = cut_after_bytes
        self.cut_connections = cut_connections
        self.port = 0
        self._stats = ProxyStats()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: an endpoint URL for boto3."""
        return f"http://127.0.0.1:{self.port}"

    def stats(self) -> ProxyStats:
        with self._lock:
            return ProxyStats(**vars(self._stats))

    def start(self) -> ShapingProxy:
        """Bind 127.0.0.1 on a free port and serve from a background thread; returns self once listening."""
        if self._thread is not None:
            raise RuntimeError("proxy already started")
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
                self.port = self._server.sockets[0].getsockname()[1]
            except OSError as err:
                failure.append(err)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, name="shaping-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every open connection, then stop the loop thread."""
        if self._loop is None or self._thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> ShapingProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        # every connection's handler ended before the loop closes: one left pending is destroyed with the loop, and
        # its clean-up then raises in whatever thread collects it (an unraisable "Event loop is closed")
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)

    def _take_cut(self) -> bool:
        """Whether the connection that just reached ``cut_after_bytes`` is to be cut (counts the cut)."""
        with self._lock:
            if self.cut_connections is not None and self._stats.cuts >= self.cut_connections:
                return False
            self._stats.cuts += 1
            return True

    def _count(self, to_client: int = 0, to_server: int = 0, connection: int = 0) -> None:
        with self._lock:
            self._stats.bytes_to_client += to_client
            self._stats.bytes_to_server += to_server
            self._stats.connections += connection

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._count(connection=1)
        try:
            server_reader, server_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError as err:
            logger.warning("proxy: upstream %s:%s unreachable: %s", self.upstream_host, self.upstream_port, err)
            client_writer.transport.abort()
            return
        self._writers.update((client_writer, server_writer))
        upstream = asyncio.create_task(self._pump_to_server(client_reader, server_writer))
        downstream = asyncio.create_task(self._pump_to_client(server_reader, client_writer, server_writer))
        try:
            await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
            # one side finished: let the other drain what it already has, then close both
            await asyncio.wait({upstream, downstream}, timeout=5)
        finally:
            for task in (upstream, downstream):
                task.cancel()
            for writer in (client_writer, server_writer):
                self._writers.discard(writer)
                writer.close()

    async def _pump_to_server(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
                self._count(to_server=len(chunk))
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            return

    async def _pump_to_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                              server_writer: asyncio.StreamWriter) -> None:
        sent = 0
        pacer = RatePacer(time.monotonic())
        try:
            while True:
                rate, link, cut_at = self.rate_bytes_per_s, self.link_bytes_per_s, self.cut_after_bytes
                paced = min(r for r in (rate, link, float(_CHUNK * 50)) if r)
                size = max(1024, min(_CHUNK, int(paced / 50)))
                if cut_at is not None:
                    size = max(1, min(size, cut_at - sent)) if sent < cut_at else size
                chunk = await reader.read(size)
                if not chunk:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                now = time.monotonic()
                delay = max(pacer.delay(now, len(chunk), rate) if rate else 0.0,
                            self._link_pacer.delay(now, len(chunk), link) if link else 0.0)
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                self._count(to_client=len(chunk))
                if cut_at is not None and sent >= cut_at and self._take_cut():
                    await _reset(writer)  # an RST for the client, as when a WAN connection drops
                    server_writer.transport.abort()
                    return
        except (ConnectionError, OSError):
            return


async def _reset(writer: asyncio.StreamWriter, deadline_s: float = 2.0) -> None:
    """Reset the connection once the bytes already written reached the peer (RST, not a clean FIN)."""
    sock: socket.socket | None = writer.get_extra_info("socket")
    if sock is not None:
        deadline = time.monotonic() + deadline_s
        while _unsent_bytes(sock) > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _unsent_bytes(sock: socket.socket) -> int:
    try:
        return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0" * 4))[0]
    except OSError:
        return 0
