"""Credentials that follow their files: `auth.*_file` is read again when it changes, and on SIGHUP.

Kubernetes updates a mounted Secret in place by writing the new files into a fresh directory and
swapping a symlink (`..data`) to it; the path the relay was given never changes, and the old file
keeps its mtime. So each check compares what the path resolves to now (the real path, device,
inode, size, mtime and ctime) with what it resolved to before: a few `stat` calls every
`auth.watch_interval_seconds`. SIGHUP reads every file again whether or not it changed.

A reload is all or nothing: the files are read and validated as at start-up
(`config.reread_auth`), a new `Authenticator` is built, and one reference is swapped
(`apply`). A request reads that reference once, so it sees the old credentials or the new
ones, never a mix. Files that cannot be read, or are refused (empty, too short, not printable
ASCII), leave the credentials in use as they are; the error is logged (what is wrong and
where, never a value) and counted.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from relay import config
from relay.auth import Authenticator
from relay.metrics import Metrics
from relay.outcomes import ReloadResult

log = logging.getLogger("relay.credentials")


class FileState(NamedTuple):
    """What a path resolves to; any difference means the file may hold something else."""

    real_path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int


def file_state(path: Path) -> FileState | None:
    """The state of the file `path` resolves to (following symlinks); None if there is none."""
    try:
        real = os.path.realpath(path)
        stat = os.stat(real)
    except OSError:
        return None
    return FileState(real, stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns,
                     stat.st_ctime_ns)  # fmt: skip


class CredentialReloader:
    """Watches the credential files of `auth` and hands every valid new set to `apply`."""

    def __init__(
        self,
        auth: config.AuthConfig,
        metrics: Metrics,
        apply: Callable[[Authenticator], None],
    ) -> None:
        self.auth = auth
        self._metrics = metrics
        self._apply = apply
        self._files = list(auth.secret_files().values())
        self._states = self._snapshot()
        self._requested = asyncio.Event()

    @property
    def watching(self) -> bool:
        return bool(self._files)

    def request(self) -> None:
        """Read every file again soon (SIGHUP), changed or not."""
        if not self._files:
            log.info("SIGHUP: no credential is read from a file, nothing to reload")
            return
        self._requested.set()

    async def catch_up(self) -> None:
        """Apply a file swapped since the configuration was read (before serving).

        The configuration was read before this reloader took its snapshot: a file swapped in
        between would otherwise go unnoticed until it changes again. The service awaits this
        before it opens the public listener, so a relay that serves holds what the files held
        when it started, and a change after that is a reload, never part of start-up."""
        await self.check(trigger="start", quiet_if_same=True)

    async def run(self) -> None:
        """Check the files until cancelled: every interval, and at once when requested."""
        interval = self.auth.watch_interval_seconds or None
        while True:
            try:
                async with asyncio.timeout(interval):
                    await self._requested.wait()
            except TimeoutError:
                await self.check(trigger="file change", only_if_changed=True)
            else:
                self._requested.clear()
                await self.check(trigger="SIGHUP")

    async def check(
        self, *, trigger: str, only_if_changed: bool = False, quiet_if_same: bool = False
    ) -> ReloadResult | None:
        """Read the files again and apply them if valid; None when nothing was done."""
        states = await asyncio.to_thread(self._snapshot)
        if only_if_changed and states == self._states:
            return None
        self._states = states
        try:
            reread = await asyncio.to_thread(config.reread_auth, self.auth)
        except config.ConfigError as error:
            result = (
                ReloadResult.UNREADABLE
                if isinstance(error, config.SecretFileUnreadable)
                else ReloadResult.INVALID
            )
            self._metrics.credentials_reloaded[result].inc()
            self._metrics.credentials_reload_ok.set(0)
            log.error(
                "credential files refused, the credentials in use stay",
                extra={"trigger": trigger, "result": result.value, "problems": error.problems},
            )
            return result
        if quiet_if_same and reread == self.auth:
            return None
        authenticator = Authenticator.of(reread)
        self._metrics.add_credentials(authenticator.labels)
        self._apply(authenticator)
        self.auth = reread
        self._metrics.credentials_reloaded[ReloadResult.SUCCESS].inc()
        self._metrics.credentials_reload_ok.set(1)
        self._metrics.credentials_loaded_at.set(time.time())
        log.info(
            "credentials reloaded",
            extra={
                "trigger": trigger,
                "bearer_tokens": len(reread.bearer_tokens),
                "app_secrets": len(reread.app_secrets),
                "verify_token": bool(reread.verify_token),
            },
        )
        return ReloadResult.SUCCESS

    def _snapshot(self) -> list[FileState | None]:
        return [file_state(path) for path in self._files]
