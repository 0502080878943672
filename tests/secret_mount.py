"""A directory laid out and updated the way the kubelet updates a mounted Secret or ConfigMap.

The kubelet's atomic writer puts each version of the files in a fresh hidden directory, points
the symlink `..data` at it with one rename, and exposes every key as `<key> -> ..data/<key>`.
The relay is handed `<dir>/<key>`: that path never changes, the old file is not touched (its
mtime stays), and the previous version's directory is deleted after the swap.

`mode` and `group` are the volume's `defaultMode` and the pod's `fsGroup`: the kubelet makes each
file that mode, owned by root and that group, so a container user reads a `0440` Secret through
its group (tests/container runs the image so).
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

_versions = itertools.count()


class SecretMount:
    def __init__(self, root: Path, *, mode: int | None = None, group: int | None = None) -> None:
        self.root = root
        self.mode = mode
        self.group = group
        root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root / key

    def write(self, files: dict[str, str]) -> None:
        """Publish a new version holding exactly `files` (key -> content)."""
        version = self.root / f"..v{next(_versions)}"
        version.mkdir()
        for key, content in files.items():
            file = version / key
            file.write_text(content)
            if self.group is not None:
                os.chown(file, 0, self.group)
            if self.mode is not None:
                file.chmod(self.mode)
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
