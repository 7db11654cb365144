"""Where the toolkit keeps things, and file checksums."""
from __future__ import annotations

import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """A temporary file next to ``target`` that replaces it only when the block succeeds; on any
    error or Ctrl-C it is removed and an existing ``target`` stays as it was. The new file keeps an
    existing ``target``'s permissions (else the umask's).

    Example:
        >>> with atomic_path("out.jsonl") as tmp:  # doctest: +SKIP
        ...     tmp.write_text("{}")
    """
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, target.stat().st_mode & 0o777 if target.exists() else 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
