"""The optimizer of training and pretraining: AdamW, fused when PyTorch has a fused kernel for the device.

Measured (``benchmarks/results/train_profile.md``, ``train_profile_2l.md``): PyTorch's default
AdamW (``foreach``) spends 47-99 ms of a step on a 2-core CPU in element-wise arithmetic over the
parameters (the 16k-row embedding dominates small models); ``fused=True`` does the same update in
one kernel per group, 6-17 ms. On a 2-layer student that is a third of the step; on 12 layers 3-4%.

A run records which it used (``"adamw-fused"`` or ``"adamw-foreach"``) and a resumed run keeps its
checkpoint's choice, so resuming stays bit-identical; checkpoints from before this module trained
with ``foreach``.
"""
from __future__ import annotations

from typing import Any, Iterable

FUSED, FOREACH = "adamw-fused", "adamw-foreach"


def recorded(trainer: dict[str, Any] | None) -> str | None:
    """The kernel a checkpoint's trainer state (:func:`toolkit.train.state.trainer_state`) trained
    with: ``None`` without a checkpoint (the fastest available), ``FOREACH`` for checkpoints from
    before this module, which did not record it.

    >>> recorded(None), recorded({"step": 4}), recorded({"step": 4, "optimizer": FUSED})
    (None, 'adamw-foreach', 'adamw-fused')
    """
    return None if trainer is None else trainer.get("optimizer", FOREACH)


def adamw(params: Iterable[Any], kind: str | None = None, **kw: Any):
    """``torch.optim.AdamW(params, **kw)``, fused (``kind=None``: whenever supported, else
    ``FUSED``/``FOREACH`` as recorded by a checkpoint). Returns ``(optimizer, kind)``.

    >>> import torch
    >>> opt, kind = adamw([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    >>> kind
    'adamw-fused'
    """
    import torch

    if kind not in (None, FUSED, FOREACH):
        raise ValueError(f"unknown optimizer {kind!r}: expected {FUSED!r} or {FOREACH!r}")
    params = list(params)
    if kind != FOREACH:
        try:
            return torch.optim.AdamW(params, fused=True, **kw), FUSED
        except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
            if kind == FUSED:
                raise
    return torch.optim.AdamW(params, **kw), FOREACH
