"""Encoder weights as safetensors shards of bounded size, in Hugging Face's sharded layout.

``model-0000k-of-0000n.safetensors`` files of at most ``max_bytes`` each (15 MB by default: what
the device tool gives back per file, with room to spare) and ``model.safetensors.index.json``
mapping each tensor to its file, with the total size for a check on reading, so that
``from_pretrained`` reads the folder too.

Example:
    >>> save_shards(load_file("encoder/model.safetensors"), Path("result"))  # doctest: +SKIP
    >>> state = load_shards("result")                                       # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

SHARD_BYTES = 15_000_000
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"


def save_shards(state: dict, out: Path, max_bytes: int = SHARD_BYTES, metadata: dict | None = None) -> list[Path]:
    """``state`` as ``model-0000k-of-0000n.safetensors`` files of at most ``max_bytes`` each and
    ``model.safetensors.index.json`` (Hugging Face's layout, so ``from_pretrained`` reads it too)."""
    from safetensors.torch import save_file

    groups: list[list[str]] = [[]]
    used = 0
    for k, v in state.items():
        size = v.numel() * v.element_size() + 200  # + its header entry, roughly
        if size > max_bytes - 4096:
            raise ValueError(f"{k} alone is {size / 1e6:.1f} MB, over the {max_bytes / 1e6:.0f} MB shard size: save in float16")
        if used + size > max_bytes - 4096 and groups[-1]:
            groups.append([])
            used = 0
        groups[-1].append(k)
        used += size
    out.mkdir(parents=True, exist_ok=True)
    paths, weight_map = [], {}
    for i, keys in enumerate(groups, 1):
        path = out / f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: state[k].contiguous() for k in keys}, str(path), metadata={"format": "pt"})
        if path.stat().st_size > max_bytes:
            raise RuntimeError(f"{path} is {path.stat().st_size} bytes, over {max_bytes}")
        weight_map |= {k: path.name for k in keys}
        paths.append(path)
    total = sum(v.numel() * v.element_size() for v in state.values())
    index = {"metadata": {"total_size": total} | (metadata or {}), "weight_map": weight_map}
    (out / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    return paths


def load_shards(folder: str | Path) -> dict:
    """The state dict of :func:`save_shards`' files, checked against the index."""
    from safetensors.torch import load_file

    folder = Path(folder)
    index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    state: dict = {}
    for name in sorted(set(index["weight_map"].values())):
        state |= load_file(str(folder / name))
    total = sum(v.numel() * v.element_size() for v in state.values())
    if set(state) != set(index["weight_map"]) or total != index["metadata"]["total_size"]:
        raise ValueError(f"the shards in {folder} do not match {INDEX}: a shard is missing or damaged; fetch the result again")
    return state
