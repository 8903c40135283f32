"""Flushing written files to storage in bulk: writeback started early per file, one ``syncfs`` at the end.

A killed process keeps the page cache; only a power loss needs the flush. So files are not fsynced one by one
(a wait per file): writeback of each is started as soon as it is written (``start_writeback``, no wait), and
one ``sync_filesystem`` before anything is declared done waits for all of it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

__all__ = ["start_writeback", "sync_filesystem"]

_SYNC_FILE_RANGE_WRITE = 2
_LIBC = ctypes.CDLL(None, use_errno=True)
_SYNCFS = getattr(_LIBC, "syncfs", None)
_SYNC_FILE_RANGE = getattr(_LIBC, "sync_file_range", None)
if _SYNC_FILE_RANGE is not None:
    _SYNC_FILE_RANGE.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)


def start_writeback(fd: int, offset: int = 0, nbytes: int = 0) -> None:
    """Ask the kernel to start writing ``[offset, offset+nbytes)`` (0: to the end) of ``fd`` out; never waits."""
    if _SYNC_FILE_RANGE is not None:
        _SYNC_FILE_RANGE(fd, offset, nbytes, _SYNC_FILE_RANGE_WRITE)  # advisory: a failure only means no head start


def sync_filesystem(folder: Path) -> None:
    """Flush every written file of ``folder``'s filesystem to storage (one ``syncfs``; ``sync`` without it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        if _SYNCFS is None:
            os.sync()
        elif _SYNCFS(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs of {folder}: {os.strerror(err)}")
    finally:
        os.close(fd)
