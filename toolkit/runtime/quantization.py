"""int8 quantisation of an exported fp32 graph, with one activation scale per row (per token).

:func:`quantize_int8` starts from ONNX Runtime's ``quantize_dynamic`` (int8 weights, one scale per
output channel) and replaces its per-tensor activation quantisation (``DynamicQuantizeLinear``: one
uint8 scale for the whole batch, so a text's result depended on the texts batched with it) by one
symmetric scale per row (:func:`per_row_activations`): each token of each window is quantised on its
own, so int8 results are the same alone or in any batch, with any padding, and closer to fp32
(benchmarks/results/int8_determinism.md). The graph uses ONNX Runtime's ``MatMulIntegerToFloat``
(``com.microsoft`` domain), as the fused graphs of ``quantize_dynamic`` do at run time.

Example:
    >>> quantize_int8("model.onnx", "model.int8.onnx")["quantization"]["activation_scales"]  # doctest: +SKIP
    'per-row'
"""
from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import InputError
from ..files import file_sha256
from .onnx_session import require

logger = logging.getLogger(__name__)

Activations = Literal["per-row", "per-batch"]
ACTIVATIONS: tuple[str, ...] = ("per-row", "per-batch")
# The int8 graph's own version, recorded beside it: an int8 graph of another version is redone
# (from the fp32 graph, without torch). 2: per-row activation scales (1: one scale per batch, whose
# results depended on the other texts of the batch).
INT8_FORMAT = 2
INT8_OPS = ["MatMul"]  # embeddings (Gather) stay fp32; heads' Gemms become MatMuls, kept fp32 by INT8_KEEP_FP32
# MatMul nodes kept in fp32 in the int8 graph (regular expressions on node names): the heads'
# projections (they cost nothing and feed the CRF / softmax directly). With per-batch activation
# scales every layer's two output projections had to stay fp32 too (all-int8 lost up to 0.55 points,
# benchmarks/results/int8_layers.md); with per-row scales all-int8 loses at most 0.27 on each
# registered split and runs 9-27% faster than that older graph, while also keeping the output
# projections in fp32 loses at most 0.13 but runs 8-14% slower (benchmarks/results/int8_determinism.md).
INT8_KEEP_FP32: tuple[str, ...] = (r"^/model/(?!encoder/)",)
# The policy of toolkit <= issue 11 (heads + attention-output and FFN-output projections in fp32):
# more accurate, slower; pass it as ``keep_fp32`` to :func:`quantize_int8` to get that graph.
INT8_KEEP_FP32_OUTPUTS: tuple[str, ...] = (r"^/model/(?!encoder/)", r"/output/dense/MatMul$")


def quantize_int8(src: str | Path, dst: str | Path, keep_fp32: Sequence[str] = INT8_KEEP_FP32, activations: Activations = "per-row") -> dict[str, Any]:
    """Int8 quantisation of the graph ``src`` into ``dst``: int8 weights (one scale per output
    channel) of every MatMul except those whose node name matches a pattern of ``keep_fp32``.

    ``activations="per-row"`` (the default) quantises each MatMul input row (one token of one
    window) with its own symmetric scale, ``max(|row|) / 127``, so a text's result does not depend
    on the texts batched with it (nor on padding); ``"per-batch"`` is ONNX Runtime's
    ``quantize_dynamic`` as it is (one uint8 scale and zero point per tensor, i.e. per batch), kept
    for comparison (benchmarks/int8_determinism.py). Returns the record of the new graph.
    """
    onnx = require("onnx")
    require("onnxruntime")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if activations not in ACTIVATIONS:
        raise InputError(f"activations must be one of {', '.join(map(repr, ACTIVATIONS))}, got {activations!r}")
    src, dst = Path(src), Path(dst)
    nodes = onnx.load(str(src), load_external_data=False).graph.node
    names = [n.name for n in nodes if n.op_type in INT8_OPS]
    names += [f"{n.name}_MatMul" for n in nodes if n.op_type == "Gemm"]  # quantize_dynamic turns a Gemm into <name>_MatMul + Add
    keep = [n for n in names if any(re.search(p, n) for p in keep_fp32)]
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    logger.info("quantising %s to int8 (%d of %d MatMuls kept in fp32, %s activation scales)", src, len(keep), len(names), activations)
    try:
        quantize_dynamic(
            str(src),
            str(tmp),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=INT8_OPS,
            per_channel=True,  # one scale per output column; one per tensor cost ~4 F1 on CMeEE dev here
            nodes_to_exclude=keep,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # else shape inference can fail
        )
        if activations == "per-row":
            graph = onnx.load(str(tmp))
            logger.info("per-row activation scales on %d quantised MatMul inputs", per_row_activations(graph))
            onnx.save(graph, str(tmp))
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dst)
    kind = "uint8, zero point 128 (symmetric), one scale per row (token)" if activations == "per-row" else "uint8 (dynamic, one scale per batch)"
    return {
        "file": dst.name,
        "bytes": dst.stat().st_size,
        "sha256": file_sha256(dst),
        "int8_format": INT8_FORMAT if activations == "per-row" else 1,
        "quantization": {"method": f"onnxruntime.quantize_dynamic + {activations} activations", "weights": "int8 per channel", "activations": kind,
                         "activation_scales": activations, "ops": INT8_OPS, "keep_fp32": list(keep_fp32), "kept_fp32": keep},
    }


def per_row_activations(model: Any) -> int:
    """Rewrite, in place, every ``DynamicQuantizeLinear`` of a ``quantize_dynamic`` graph (one
    scale per tensor) into a per-row symmetric quantisation; returns how many were rewritten.

    For an input ``x [..., K]``: ``s = max(|x|, axis=-1) / 127`` (at least ``1e-12``) and
    ``q = round(x / s) + 128`` as uint8 (``QuantizeLinear`` per axis on the ``[rows, K]`` view, zero
    point 128). Each ``MatMulInteger -> Cast -> Mul(weight scales)`` that reads ``q`` becomes ONNX
    Runtime's ``MatMulIntegerToFloat`` (activation scale 1, zero point 128, the per-channel weight
    scales) followed by a ``Mul`` by ``s [..., 1]``. Each row's result depends on that row alone.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only(name: str, op: str) -> Any:
        users = consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op:
            raise RuntimeError(f"unexpected int8 graph from onnxruntime.quantize_dynamic: {name!r} does not feed one {op}; use activations='per-batch'")
        return users[0]

    shared = {"one": np.array(1.0, np.float32), "zero_point": np.array(128, np.uint8), "eps": np.array(1e-12, np.float32),
              "inv127": np.array(1 / 127, np.float32), "flat": np.array([-1], np.int64)}
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        shared["axes"] = np.array([-1], np.int64)
    const = {k: f"per_row/{k}" for k in shared}
    graph.initializer.extend(numpy_helper.from_array(v, const[k]) for k, v in shared.items())
    replace: dict[str, list[Any]] = {}  # output of a removed node -> the nodes that take its place
    removed: set[str] = set()
    count = 0
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        count += 1
        x, (q, scale, _) = node.input[0], node.output
        p = f"{node.name}/per_row"
        row = f"{p}/scale"
        reduce = (helper.make_node("ReduceMax", [f"{p}/abs", const["axes"]], [f"{p}/max"], keepdims=1) if opset >= 18
                  else helper.make_node("ReduceMax", [f"{p}/abs"], [f"{p}/max"], axes=[-1], keepdims=1))
        replace[q] = [
            helper.make_node("Abs", [x], [f"{p}/abs"]),
            reduce,
            helper.make_node("Max", [f"{p}/max", const["eps"]], [f"{p}/max_safe"]),
            helper.make_node("Mul", [f"{p}/max_safe", const["inv127"]], [row]),
            helper.make_node("Reshape", [row, const["flat"]], [f"{p}/scale_flat"]),
            helper.make_node("Shape", [f"{p}/scale_flat"], [f"{p}/rows"]),
            helper.make_node("ConstantOfShape", [f"{p}/rows"], [f"{p}/zero_points"], value=helper.make_tensor("v", TensorProto.UINT8, [1], [128])),
            helper.make_node("Shape", [x], [f"{p}/shape"]),
            helper.make_node("Shape", [x], [f"{p}/k"], start=-1),
            helper.make_node("Concat", [const["flat"], f"{p}/k"], [f"{p}/shape2d"], axis=0),
            helper.make_node("Reshape", [x, f"{p}/shape2d"], [f"{p}/x2d"]),
            helper.make_node("QuantizeLinear", [f"{p}/x2d", f"{p}/scale_flat", f"{p}/zero_points"], [f"{p}/q2d"], axis=0),
            helper.make_node("Reshape", [f"{p}/q2d", f"{p}/shape"], [q]),
        ]
        for matmul in consumers.get(q, []):
            cast = only(matmul.output[0], "Cast")
            mul = only(cast.output[0], "Mul")
            scales = producer[next(i for i in mul.input if i != cast.output[0])]
            weight_scale = next(i for i in scales.input if i != scale)
            y, unscaled = mul.output[0], f"{mul.output[0]}/per_row_unscaled"
            inputs = [q, matmul.input[1], const["one"], weight_scale, const["zero_point"], *matmul.input[3:4]]
            replace[y] = [helper.make_node("MatMulIntegerToFloat", inputs, [unscaled], name=f"{matmul.name}/per_row", domain="com.microsoft"),
                          helper.make_node("Mul", [unscaled, row], [y], name=f"{mul.name}/per_row")]
            removed.update(n.output[0] for n in (matmul, cast, scales))
    nodes = []
    for node in graph.node:
        out = node.output[0] if node.output else ""
        if out in replace:
            nodes += replace[out]
        elif out not in removed:
            nodes.append(type(node)())
            nodes[-1].CopyFrom(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return count
