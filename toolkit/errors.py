"""One base class for every error the toolkit raises on purpose, and what each kind means.

Every message says what went wrong *and what to do*; data errors name ``file:line``. The CLI turns
any :class:`ToolkitError` into one line on stderr and exit code 2 (no traceback unless ``-v``).

Each class also derives from the built-in exception that code written before this module caught
(``ValueError``, ``FileNotFoundError``, ``KeyError``), so ``except ValueError`` keeps working.

Example:
    >>> try:
    ...     raise InputError("batch_size must be a positive integer, got -1")
    ... except ToolkitError as err:
    ...     str(err)
    'batch_size must be a positive integer, got -1'
"""
from __future__ import annotations


class ToolkitError(Exception):
    """Base of all toolkit errors: catch this to handle any of them."""


class InputError(ToolkitError, ValueError):
    """A bad argument or input text (wrong type, negative batch size, lone surrogate ...)."""


class ModelFolderError(ToolkitError, ValueError):
    """A model folder that is incomplete, half-written, corrupted or malformed; names the file."""


class ModelFileMissingError(ModelFolderError, FileNotFoundError):
    """A file that a model folder's manifest needs is missing or unreadable."""


class DestinationExistsError(ToolkitError, FileExistsError):
    """An output folder or file that holds something the call would destroy; says what to pass."""


class ConfigError(ToolkitError, ValueError):
    """A malformed YAML manifest, recipe or option; names the file and the key."""


class DataError(ToolkitError, ValueError):
    """A malformed corpus file; the message names ``file:line`` and what was expected."""


class RuntimeUnavailableError(ToolkitError, RuntimeError):
    """A runtime or device that this installation cannot use (``--device cuda`` on a CPU build,
    ONNX Runtime not installed, no export yet); says what to install or run."""


class UnknownNameError(ToolkitError, KeyError):
    """An unknown model, dataset or task name; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


__all__ = [
    "ToolkitError", "InputError", "ModelFolderError", "ModelFileMissingError", "DestinationExistsError", "ConfigError",
    "DataError", "RuntimeUnavailableError", "UnknownNameError",
]
