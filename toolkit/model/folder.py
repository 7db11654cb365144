"""A model folder on disk: written atomically, checked on every load. Imports no torch.

Writing. :func:`atomic_folder` gives a hidden temporary sibling (``.<name>.tmp-<pid>-<random>``) to
write into; when the block ends without an error, every file is fsynced and the folder is swapped in
with two renames (the old one to ``.<name>.old-...``, the new one to ``<name>``) and the old one
removed. A crash (even ``kill -9``) leaves the old or the new folder complete under ``<name>``, plus
at most a stray hidden sibling that the next save to the same place removes. The manifest is written
last, with the sha256 of every file the folder needs (its ``files:`` section).

Checking. :func:`verify` runs on every load (both runtimes), before any file is opened by ``transformers``,
``safetensors`` or ``tokenizers``: each file the manifest needs (the encoder's ``config.json``,
``tokenizer.json`` and weights, each head's weights, and everything its ``files:`` lists) must exist
inside the folder (no absolute path, no ``..``, no symlink out of it), be a regular file (a FIFO is
refused by ``os.stat``, never opened), and have its recorded sha256; every ``.safetensors`` file must
hold as many bytes as its header says. About 60 ms for the 33 MB shipped model, once per process
(digests are cached per path, size and mtime by :func:`toolkit.files.file_sha256`).

Folders written before checksums existed (no ``files:``) still load, with a warning that says to
re-save them (or to run :func:`toolkit.model.manifest.seal`); everything except the checksums is still checked. Exports under
``onnx/``, the model card and other extra files are not in ``files:``: they are not needed to load the
model (an export records its own sources, see :mod:`toolkit.runtime.export`).

Example:
    >>> with atomic_folder("models/ner") as tmp:  # doctest: +SKIP
    ...     (tmp / "heads").mkdir()  # write everything into tmp, the manifest last
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import stat
import struct
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping, Protocol

from ..errors import ConfigError, DestinationExistsError, ModelFileMissingError, ModelFolderError
from ..files import MANIFEST, file_sha256



class FolderSpec(Protocol):
    """What this module reads of a :class:`toolkit.model.manifest.Manifest` (which imports this module)."""

    encoder: str
    tasks: Mapping[str, Any]  # each with a ``weights`` path
    files: dict[str, str] | None


logger = logging.getLogger(__name__)

ENCODER_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
ENCODER_NEEDS = ("config.json", "tokenizer.json")
_WARNED: set[str] = set()


# ------------------------------------------------------------------ paths that stay inside the folder
def relative_path(where: str, key: str, value: Any) -> str:
    """``value`` checked as a relative POSIX path inside the model folder (``ConfigError`` if not).

    >>> relative_path("toolkit.yaml", "weights", "heads/ner.safetensors")
    'heads/ner.safetensors'
    """
    text = str(value) if value is not None else ""
    parts = PurePosixPath(text).parts
    if not text or "\\" in text or text.startswith("/") or ".." in parts or (parts and ":" in parts[0]):
        raise ConfigError(f"{where}: {key} {text!r} must be a relative path inside the model folder "
                          f"(such as 'heads/ner.safetensors'), without '..'; fix it in {MANIFEST}")
    return PurePosixPath(*[p for p in parts if p != "."]).as_posix()


def _inside(root: Path, name: str) -> Path:
    """``root / name`` after following symlinks; refused when that leaves ``root``."""
    path = root / name
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop
        raise ModelFolderError(f"{path} cannot be resolved ({err}); replace it with a regular file") from err
    if real != root and root not in real.parents:
        raise ModelFolderError(f"{path} points outside the model folder (to {real}); model folders must be "
                               "self-contained: copy the file into the folder instead of linking to it")
    return real


def _regular(root: Path, name: str) -> os.stat_result:
    """``os.stat`` of a file the folder needs; refuses a missing, unreadable or non-regular file."""
    path = root / name
    real = _inside(root, name)
    try:
        st = os.stat(real)
    except OSError as err:
        raise ModelFileMissingError(f"{path} is missing or unreadable ({err.strerror}); the model folder "
                                    f"{root} is incomplete: copy it again or re-save the model") from err
    if not stat.S_ISREG(st.st_mode):
        raise ModelFolderError(f"{path} is not a regular file; replace it with the file the model was saved with")
    if not os.access(real, os.R_OK):
        raise ModelFileMissingError(f"{path} is not readable; fix its permissions (chmod a+r)")
    return st


# ------------------------------------------------------------------ what a folder needs, and its checksums
def needed_files(folder: str | Path, manifest: FolderSpec) -> list[str]:
    """Relative paths of the files the folder needs: every file of the encoder folder and each head's
    weights (what :func:`checksums` records in the manifest)."""
    folder = Path(folder)
    enc = folder / manifest.encoder
    names = [f"{manifest.encoder}/{p.name}" for p in _entries(enc)] if enc.is_dir() else []
    names += [spec.weights for spec in manifest.tasks.values()]
    return list(dict.fromkeys(names))


def _entries(directory: Path) -> list[Path]:
    """The visible entries of a folder that are not folders themselves (files, links, FIFOs ...)."""
    return [p for p in sorted(directory.iterdir()) if not p.name.startswith(".") and not p.is_dir()]


def checksums(folder: str | Path, names: list[str]) -> dict[str, str]:
    """``{name: sha256}`` of ``names`` in ``folder``, each checked to be a regular file inside it."""
    root = Path(folder).resolve()
    out = {}
    for name in names:
        _regular(root, name)
        out[name] = file_sha256(root / name)
    return out


def verify(folder: str | Path, manifest: FolderSpec) -> None:
    """Refuse a model folder that is incomplete, tampered with or half-written (see module docstring).

    Raises :class:`~toolkit.errors.ModelFileMissingError` for a missing file and
    :class:`~toolkit.errors.ModelFolderError` for anything else, naming the file and what to do.

    Example:
        >>> verify("pretrained/zh-multitask", Manifest.read("pretrained/zh-multitask"))  # doctest: +SKIP
    """
    root = Path(folder).resolve()
    enc = manifest.encoder
    if not (root / enc).is_dir():
        raise ModelFileMissingError(f"{Path(folder) / enc} is missing: the model folder {folder} has no encoder; "
                                    "copy the folder again or re-save the model")
    needed = [f"{enc}/{name}" for name in ENCODER_NEEDS]
    weights = [f"{enc}/{name}" for name in ENCODER_WEIGHTS if (root / enc / name).exists()]
    needed += weights or [f"{enc}/{ENCODER_WEIGHTS[0]}"]
    needed += [spec.weights for spec in manifest.tasks.values()]
    needed += [f"{enc}/{p.name}" for p in _entries(root / enc)]  # transformers may open any: no FIFO, no link out
    recorded = manifest.files or {}
    for name in dict.fromkeys([*needed, *recorded]):
        _regular(root, name)
        if name in recorded and file_sha256(root / name) != recorded[name]:
            raise ModelFolderError(f"{Path(folder) / name} does not match the sha256 recorded in {MANIFEST}: the file "
                                   "is corrupted, half-written or was changed after saving; restore the model folder "
                                   "from a good copy or re-save the model")
        if name.endswith(".safetensors"):
            check_safetensors(root / name, Path(folder) / name)
    if manifest.files is None and str(root) not in _WARNED:
        _WARNED.add(str(root))
        logger.warning("%s has no files: checksums in its %s (written by an older toolkit), so corrupted files "
                       "cannot be detected; re-save it, or run toolkit.model.manifest.seal(%r) on a known-good copy",
                       folder, MANIFEST, str(folder))


# ------------------------------------------------------------------ safetensors
def check_safetensors(path: Path, shown: Path | None = None) -> None:
    """Refuse a ``.safetensors`` file whose size does not match its header (truncated or not one)."""
    shown = shown or path
    size = path.stat().st_size
    hint = "restore the file from a good copy of the model folder or re-save the model"
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > size - 8:
                raise ValueError(f"header of {length} bytes")
            header = json.loads(handle.read(length))
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
        raise ModelFolderError(f"{shown} is not a valid safetensors file ({err}); {hint}") from err
    if 8 + length + end != size:
        raise ModelFolderError(f"{shown} is truncated or padded: its header says {8 + length + end} bytes, the file "
                               f"has {size}; {hint}")


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Write a folder atomically: yields a temporary sibling; on success it replaces ``path``.

    ``path`` may be missing, an empty folder, or a model folder (with a ``toolkit.yaml``); anything
    else is refused rather than deleted. On an error the temporary folder is removed and ``path``
    is untouched.
    """
    final = Path(path)
    if final.exists() and not final.is_dir():
        raise DestinationExistsError(f"{final} exists and is not a folder; choose another path for the model folder")
    if final.is_dir() and any(final.iterdir()) and not (final / MANIFEST).is_file():
        raise DestinationExistsError(f"{final} is a folder with files but no {MANIFEST}; saving would replace it: "
                              "choose a new or empty folder (or a model folder to overwrite)")
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_strays(final)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    tmp.mkdir()
    try:
        yield tmp
        replace_folder(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def replace_folder(tmp: str | Path, final: str | Path) -> None:
    """Swap the complete folder ``tmp`` in as ``final`` (fsync, then rename; the old one is removed)."""
    tmp, final = Path(tmp), Path(final)
    _fsync_tree(tmp)
    old = final.with_name(f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
    moved = final.exists() or final.is_symlink()
    if moved:
        os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        if moved:
            os.replace(old, final)  # put the previous folder back
        raise
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def clean_strays(final: Path) -> None:
    """Remove what interrupted saves to ``final`` left (``.<name>.tmp-*`` / ``.<name>.old-*`` of dead
    processes); a save in progress in a live process is left alone."""
    if not final.parent.is_dir():
        return
    for kind in ("tmp", "old"):
        for stray in final.parent.glob(f".{final.name}.{kind}-*"):
            pid = stray.name.rsplit("-", 2)[-2]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            logger.info("removing %s, left by an interrupted save", stray)
            shutil.rmtree(stray, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems cannot fsync a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def interrupted_save_hint(path: str | Path) -> str:
    """A hint for a missing model folder whose last save was interrupted between its two renames."""
    final = Path(path)
    olds = sorted(final.parent.glob(f".{final.name}.old-*")) if final.parent.is_dir() else []
    return f" (a save was interrupted: the previous version is in {olds[-1]}; rename it to {final})" if olds else ""


__all__ = ["atomic_folder", "check_safetensors", "checksums", "needed_files",
           "relative_path", "replace_folder", "verify"]
