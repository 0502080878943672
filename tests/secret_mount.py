"""A directory laid out and updated the way the kubelet updates a mounted Secret.

The kubelet's atomic writer puts each version of the files in a fresh hidden directory, points
the symlink `..data` at it with one rename, and exposes every key as `<key> -> ..data/<key>`.
The relay is handed `<dir>/<key>`: that path never changes, the old file is not touched (its
mtime stays), and the previous version's directory is deleted after the swap.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

_versions = itertools.count()


class SecretMount:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key

    def write(self, files: dict[str, str]) -> None:
        """Publish a new version holding exactly `files` (key -> content)."""
        version = self.root / f"..v{next(_versions)}"
        version.mkdir()
        for key, content in files.items():
            (version / key).write_text(content)
        data = self.root / "..data"
        previous = data.resolve() if data.is_symlink() else None
        staged = self.root / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, data)  # the one atomic step
        for key in files:
            link = self.root / key
            if not link.is_symlink():
                link.symlink_to(Path("..data") / key)
        if previous is not None:
            shutil.rmtree(previous)
