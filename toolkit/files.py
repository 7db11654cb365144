"""Where the toolkit keeps things, and file checksums."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_DIGESTS: dict[tuple[str, int, int], str] = {}


def toolkit_home() -> Path:
    """The toolkit's cache folder: ``$TOOLKIT_HOME``, else ``~/.cache/toolkit``."""
    home = os.environ.get("TOOLKIT_HOME")
    return Path(home) if home else Path.home() / ".cache" / "toolkit"


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file, read in 1 MiB blocks; remembered per (path, size, mtime)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]
