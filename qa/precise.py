"""The shipped ranker in float: its int8 weights dequantized, its activations no longer quantized.

The cross-encoder ships with int8 weights and dynamic int8 activations (`qa.training.export`): 3x faster than
float and a quarter of the size. The activations' quantization moves a score by about 0.15 on average (up to
about 0.5), which is noise where two candidates score alike: on the bundled article it decided which of two
sentences was cited first. The weights' quantization matters far less (the int8 weights run in float kept the
float model's order), so no second file is needed: the float graph is rebuilt from the int8 one at load.

`float_graph` replaces each quantized matrix product (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul by
the two scales) with a float MatMul on the dequantized weight, `w = (q - zero_point) * scale`, and drops what
only the quantized path read. The embedding tables stay as they are (their DequantizeLinear is exact for
the stored values). The ranker runs it only on the few candidates whose int8 scores are too close to order
(`AnswerRanker.rank`), chosen by `close_candidates`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelUnavailableError


def float_graph(path: str | Path) -> Any:
    """The model at `path` (an int8 ranker.onnx) as an `onnx.ModelProto` with float activations."""
    import onnx
    from onnx import helper, numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable model gets the same answer
        raise ModelUnavailableError(f"answer ranker: cannot read {path} ({exc})") from exc
    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def only_reader(name: str, op_type: str) -> Any:
        found = readers.get(name, [])
        if len(found) != 1 or found[0].op_type != op_type:
            raise ModelUnavailableError(f"answer ranker at {path}: {name} is not read by one {op_type}; "
                                        "it is not a graph `qa train` exports")
        return found[0]

    replaced: dict[str, Any] = {}  # the scaling Mul's name -> the float MatMul that takes its place
    weights = []
    for node in graph.node:
        if node.op_type != "MatMulInteger":
            continue
        activations, quantized = node.input[:2]
        base = quantized.removesuffix("_quantized")
        if quantized not in initializers or producer.get(activations) is None \
                or producer[activations].op_type != "DynamicQuantizeLinear":
            raise ModelUnavailableError(f"answer ranker at {path}: {node.name} is not a dynamically quantized "
                                        "product of activations and weights")
        weight = dequantized({name: numpy_helper.to_array(initializers[name])
                              for name in (quantized, base + "_zero_point", base + "_scale")}, quantized)
        scaling = only_reader(only_reader(node.output[0], "Cast").output[0], "Mul")
        weights.append(numpy_helper.from_array(weight, f"{base}_float"))
        replaced[scaling.name] = helper.make_node("MatMul", [producer[activations].input[0], f"{base}_float"],
                                                  list(scaling.output), name=f"{base}_float_matmul")
    if not replaced:
        raise ModelUnavailableError(f"answer ranker at {path}: no quantized products to run in float")
    nodes = [replaced.get(node.name, node) for node in graph.node]
    needed = {output.name for output in graph.output}
    kept = []
    for node in reversed(nodes):  # from the outputs back: what nothing needs any more is dropped
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    still_read = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend([*still_read, *weights])
    return model


def close_candidates(relevance: np.ndarray, margin: float, most: int) -> list[int]:
    """The candidates whose score is within `margin` of the best, best first, at most `most` of them."""
    if margin <= 0 or most < 2 or len(relevance) < 2:
        return []
    order = np.argsort(-np.asarray(relevance), kind="stable")
    best = float(relevance[order[0]])
    return [int(k) for k in order[:most] if best - float(relevance[k]) <= margin]


def dequantized(values: dict[str, np.ndarray], quantized: str) -> np.ndarray:
    """The float weight behind the quantizer's initializer `quantized` ("<name>_quantized", beside
    "<name>_zero_point" and "<name>_scale" in `values`): `(q - zero_point) * scale`."""
    base = quantized.removesuffix("_quantized")
    return ((values[quantized].astype(np.float32) - values[base + "_zero_point"].astype(np.float32))
            * values[base + "_scale"].astype(np.float32))
