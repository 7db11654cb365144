"""What the pipelines accept, checked before any model work (the same on every runtime).

* A text is a ``str`` (anything else is a ``TypeError``). A lone surrogate (``"\\ud800"``: half of a
  UTF-16 pair, not valid Unicode) is an :class:`toolkit.errors.InputError` that names the text's
  index in the batch and the character position. **Policy:** one bad text fails the whole call and
  nothing is returned partially: a result list that silently lacks or fakes an answer is worse for
  a batch job than an error that says which input to repair. To skip bad texts instead, check them
  first with :func:`check_text`.
* Blank text (no tokens: empty, spaces, invisible characters) is not run through the model: a
  tagger returns ``[]``; a classifier returns ``{"label": None, "score": None, "scores": {}}``, and
  so does a matcher for a pair with a blank side.
* ``batch_size`` is a positive ``int`` (:func:`check_batch_size`); ``0``, ``-1``, ``True``, ``2.5``
  are an :class:`toolkit.errors.InputError`.

Example:
    >>> check_batch_size(None, 32), check_batch_size(8, 32)
    (32, 8)
"""
from __future__ import annotations

import numbers
import re
from typing import Any

from ..errors import InputError

_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(text: str, where: str = "the text") -> None:
    """Raise :class:`toolkit.errors.InputError` if ``text`` cannot be processed (a lone surrogate),
    naming ``where`` and the character position.

    >>> check_text("发热\\ud800", where="text 2 of the batch")
    Traceback (most recent call last):
    ...
    toolkit.errors.InputError: text 2 of the batch has a lone surrogate '\\ud800' at character 2, which is not valid Unicode (often a file read with errors='surrogateescape'); repair it, e.g. text.encode('utf-8', 'replace').decode('utf-8'). Nothing of this call was processed.
    """
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise InputError(
            f"{where} has a lone surrogate {bad.group()!r} at character {bad.start()}, which is not valid Unicode "
            "(often a file read with errors='surrogateescape'); repair it, e.g. text.encode('utf-8', 'replace').decode('utf-8'). "
            "Nothing of this call was processed."
        )


def check_batch_size(value: Any, default: int) -> int:
    """``value`` as a batch size (``None`` -> ``default``); anything but a positive ``int`` is an
    :class:`toolkit.errors.InputError`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise InputError(f"batch_size must be a positive integer (1, 2, 3 ...; default {default}), got {value!r}")
    return int(value)


def check_max_length(value: Any) -> int:
    """A model's ``max_length`` in tokens: an ``int`` of at least 3 (``[CLS] a [SEP] b [SEP]``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 3:
        raise InputError(f"max_length must be an integer of at least 3 ([CLS] a [SEP] b [SEP]), got {value!r}")
    return int(value)


def where(i: int, single: bool, what: str = "text") -> str:
    """How an error message names input ``i``: ``"the text"`` alone, ``"text 3 of the batch"``."""
    return f"the {what}" if single else f"{what} {i} of the batch"
