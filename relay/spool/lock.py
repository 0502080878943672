"""One relay per spool directory: an exclusive `flock` on `<directory>/lock`, held for the
process's life. Two writers would interleave their frames and delete each other's segments;
the kernel drops the lock when the process ends, however it ends (SIGKILL included), so a
stale lock never blocks a restart. `flock` is local: a network file system may not honour it,
which is one reason the spool belongs on a local disk.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from relay.startup import StartupError

LOCK_NAME = "lock"


class DirectoryLock:
    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StartupError(
                f"spool.directory {self.path.parent} is in use by another relay"
                f"{f' (process {holder})' if holder else ''}: each relay needs a spool "
                "directory of its own"
            ) from None
        except OSError:
            os.close(fd)
            raise
        # For the message a second relay gets; the lock, not this number, is what guards.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor releases the lock


def _read_pid(fd: int) -> str:
    with contextlib.suppress(OSError, UnicodeDecodeError):
        text = os.pread(fd, 32, 0).decode().strip()
        if text.isdigit():
            return text
    return ""
