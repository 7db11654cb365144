"""What the pipelines return, and the one way results become JSON.

* a tagger head gives a list of :class:`Entity` (character offsets into the ORIGINAL text);
* a classifier or matcher head gives a :class:`Label` (a ``dict`` with the keys ``label``,
  ``score``, ``scores``, plus attribute access);
* a single-task pipeline returns that result bare; a multi-task model, or an explicit list of
  several tasks, returns ``{task: result}`` per input.

:func:`to_json_data` turns any of these (or a list of them) into plain JSON data; the CLI, the HTTP
server and batch inference all write results through it. The JSON form is described by
``docs/results.schema.json`` (JSON Schema 2020-12) and explained in ``docs/results.md``.

Example:
    >>> to_json_data({"ner": [Entity("北京", "LOC", 3, 5, 0.98)], "sentiment": Label("pos", 0.9, {"neg": 0.1, "pos": 0.9})})
    {'ner': [{'text': '北京', 'label': 'LOC', 'start': 3, 'end': 5, 'score': 0.98}], 'sentiment': {'label': 'pos', 'score': 0.9, 'scores': {'neg': 0.1, 'pos': 0.9}}}
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class Entity:
    """An entity in the original text: ``text == original[start:end]``; ``score`` in [0, 1].

    Example:
        >>> Entity("北京", "LOC", 3, 5, 0.98).to_dict()
        {'text': '北京', 'label': 'LOC', 'start': 3, 'end': 5, 'score': 0.98}
    """

    text: str
    label: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"text", "label", "start", "end", "score"}`` (a plain dict, in this order)."""
        return asdict(self)


class Label(dict):
    """The result of a classifier or matcher head: the best ``label``, its ``score`` (probability,
    rounded to 6 digits) and ``scores`` (every label's probability, in the head's label order).

    A ``dict`` holding exactly the keys ``label``, ``score`` and ``scores``, so ``r["label"]``,
    ``r == {"label": ..., ...}`` and ``json.dumps(r)`` work as on the plain dict it replaces; the
    same values are read-only attributes. :meth:`blank` is the answer for an input with nothing to
    classify (a blank text, a pair with a blank side): ``label`` and ``score`` are ``None``,
    ``scores`` is empty.

    Example:
        >>> r = Label("pos", 0.9, {"neg": 0.1, "pos": 0.9})
        >>> r.label, r["score"], r == {"label": "pos", "score": 0.9, "scores": {"neg": 0.1, "pos": 0.9}}
        ('pos', 0.9, True)
        >>> Label.blank()
        {'label': None, 'score': None, 'scores': {}}
    """

    __slots__ = ()

    def __init__(self, label: str | None, score: float | None, scores: Mapping[str, float]) -> None:
        super().__init__(label=label, score=score, scores=dict(scores))

    @classmethod
    def blank(cls) -> "Label":
        """The explicit "nothing to classify" result (a new object each call)."""
        return cls(None, None, {})

    @property
    def label(self) -> str | None:
        return self["label"]

    @property
    def score(self) -> float | None:
        return self["score"]

    @property
    def scores(self) -> dict[str, float]:
        return self["scores"]

    def to_dict(self) -> dict[str, Any]:
        """A plain ``dict`` (``scores`` a plain dict too), e.g. for ``json.dumps``."""
        return {"label": self["label"], "score": self["score"], "scores": dict(self["scores"])}

    def __reduce__(self):  # pickle and copy through the constructor: no dict state to restore
        return (type(self), (self["label"], self["score"], self["scores"]))


def to_json_data(result: Any) -> Any:
    """``result`` as plain JSON data (dicts, lists, strings, numbers, ``None``).

    Takes any pipeline result: an :class:`Entity`, a :class:`Label`, a list of entities, a
    ``{task: result}`` dict, or a list of any of those. Anything with a ``to_dict()`` method is
    converted through it (so entity classes defined elsewhere work too); dicts, lists and tuples are
    converted item by item; other dataclasses through :func:`dataclasses.asdict`; anything else is
    returned as it is.

    Example:
        >>> to_json_data([[Entity("张三", "PER", 0, 2, 0.99)], []])
        [[{'text': '张三', 'label': 'PER', 'start': 0, 'end': 2, 'score': 0.99}], []]
    """
    to_dict = getattr(result, "to_dict", None)
    if callable(to_dict) and not isinstance(result, type):
        return to_json_data(to_dict())
    if isinstance(result, dict):
        return {k: to_json_data(v) for k, v in result.items()}
    if isinstance(result, (list, tuple)):
        return [to_json_data(v) for v in result]
    if is_dataclass(result) and not isinstance(result, type):
        return asdict(result)
    return result


__all__ = ["Entity", "Label", "to_json_data"]
