"""Where the toolkit keeps things, and file checksums."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import ModelFolderError

logger = logging.getLogger(__name__)

MANIFEST = "toolkit.yaml"  # the manifest of a model folder

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


def read_json(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when the file is absent, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def cached_entry(path: str | Path, key: str) -> dict[str, Any] | None:
    """Entry ``key`` of a measurement cache written by :func:`cache_entry` (``None`` when absent)."""
    entry = read_json(path).get("entries", {}).get(key)
    return entry if isinstance(entry, dict) else None


def cache_entry(path: str | Path, key: str, entry: dict[str, Any], header: dict[str, Any], what: str = "the measurement") -> None:
    """Add ``entry`` under ``key`` to the JSON measurement cache ``path`` (``{**header, "entries":
    {key: entry}}``, written atomically). A cache that cannot be written only costs a measurement
    next time: a warning, no error.

    Example:
        >>> cache_entry(toolkit_home() / "precision" / "cpu.json", "hidden384", {"choice": "fp32"}, {"torch": "2.5"})  # doctest: +SKIP
    """
    path = Path(path)
    data = read_json(path)
    data.update(header)
    entries = data.get("entries")
    data["entries"] = {**(entries if isinstance(entries, dict) else {}), key: entry}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as err:
        logger.warning("could not cache %s in %s (%s); the next run measures again", what, path, err)


def load_safetensors(path: str | Path, framework: str = "pt") -> dict[str, Any]:
    """The tensors of a head's ``.safetensors`` file (``framework`` ``"pt"`` or ``"numpy"``); a file the
    library cannot read is a :class:`~toolkit.errors.ModelFolderError` naming it."""
    if framework == "numpy":
        from safetensors.numpy import load_file
    else:
        from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError, OSError, or ValueError
        raise ModelFolderError(f"{path} cannot be read as safetensors ({type(err).__name__}: {err}); restore it "
                               "from a good copy of the model folder or re-save the model") from err


def check_shapes(path: str | Path, task: str, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    """Refuse head weights that do not fit the head the manifest describes (e.g. a changed label list)."""
    missing, extra = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or extra:
        raise ModelFolderError(f"{path} does not hold the weights of task {task!r} as {MANIFEST} describes it "
                               f"(missing {missing}, unexpected {extra}); check the task's kind and options in {MANIFEST}")
    for key in expected:
        if tuple(expected[key]) != tuple(found[key]):
            raise ModelFolderError(f"{path}: {key} has shape {list(found[key])} but task {task!r} in {MANIFEST} needs "
                                   f"{list(expected[key])}; its labels (or scheme) no longer match the trained head: "
                                   f"restore the labels list the model was saved with")


# ------------------------------------------------------------------ atomic writes
