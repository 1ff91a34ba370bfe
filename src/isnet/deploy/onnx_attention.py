"""Attention in an ONNX graph a block of queries at a time, so that its memory is linear in the pixels.

ONNX (opset 17) has no fused attention operator: an exported attention is
``MatMul(Q, Kᵀ) → Softmax → MatMul(·, V)``, whose scores are L×S (HW×HW for ILCM: 4.3 G
floats at 1024×2048 with stride 8). :func:`loop_attention` rewrites every such chain into an
ONNX ``Loop`` over blocks of :data:`QUERY_BLOCK` rows of Q, whose body computes one block's
scores, softmax and product with V; the blocks' results are the Loop's scan outputs, put back
in order. The queries are padded to a whole number of blocks (scan outputs must share one
shape) and the padding cut from the result. What a runtime holds is then ``QUERY_BLOCK × S``
scores, whatever the image size, and the results are the same up to round-off (each row's
softmax is its own).

A chain is rewritten only where the softmax runs over the last axis, its input is the first
product alone (SLCM's biased softmax, ``MatMul → Add → Softmax``, has few keys and is left as
it is) and the first product's output feeds nothing else.
"""

from __future__ import annotations

from itertools import count

QUERY_BLOCK = 1024  # 4 MiB of float32 scores per 1,024 keys


def loop_attention(model, block: int = QUERY_BLOCK) -> int:
    """Rewrite each ``MatMul → Softmax(last axis) → MatMul`` chain of rank-4 tensors in ``model`` (an
    ``onnx.ModelProto``, changed in place) into a Loop over blocks of ``block`` queries; how many were."""
    import onnx

    ranks = {info.name: len(info.type.tensor_type.shape.dim)
             for info in onnx.shape_inference.infer_shapes(model).graph.value_info
             if info.type.tensor_type.HasField("shape")}
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    names = (f"query_block_loop_{index}" for index in count())
    rewritten = 0
    for softmax in [node for node in graph.node if node.op_type == "Softmax" and _last_axis(node)]:
        scores = producers.get(softmax.input[0])
        users = consumers.get(softmax.output[0], [])
        if scores is None or scores.op_type != "MatMul" or len(consumers.get(scores.output[0], [])) != 1:
            continue
        if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[0] != softmax.output[0]:
            continue
        product = users[0]
        if not all(ranks.get(name) == 4 for name in (*scores.input, product.input[1])):
            continue  # the Loop below is written for (N, heads, L, T) queries
        replacement = _loop_nodes(next(names), scores.input[0], scores.input[1], product.input[1], product.output[0], block)
        position = list(graph.node).index(scores)
        for node in (scores, softmax, product):
            graph.node.remove(node)
        for offset, node in enumerate(replacement):
            graph.node.insert(position + offset, node)
        rewritten += 1
    return rewritten


def _last_axis(softmax) -> bool:
    axis = next((attribute.i for attribute in softmax.attribute if attribute.name == "axis"), -1)
    return axis == -1  # the exporter writes -1 for dim=-1; another axis is not this pattern


def _loop_nodes(prefix: str, query: str, key_t: str, value: str, output: str, block: int) -> list:
    """The nodes computing ``softmax(query · key_t) · value`` (rank 4, queries on axis -2) a block at a time into ``output``."""
    from onnx import TensorProto, helper

    def name(suffix: str) -> str:
        return f"{prefix}_{suffix}"

    def constant(suffix: str, values: list[int]):
        return helper.make_node("Constant", [], [name(suffix)],
                                value=helper.make_tensor(name(suffix), TensorProto.INT64, [len(values)], values))

    def node(op: str, inputs: list[str], out: str, **attributes):
        return helper.make_node(op, inputs, [name(out)], **attributes)

    return [
        constant("block", [block]), constant("block_less_1", [block - 1]), constant("zero", [0]),
        constant("zeros_6", [0] * 6), constant("rows_axis", [-2]), constant("last", [-1]), constant("two", [2]),
        constant("end", [2**62]),
        # L queries in ceil(L / block) blocks: the queries padded on axis -2 to blocks · block rows
        node("Shape", [query], "query_shape"),
        node("Slice", [name("query_shape"), name("rows_axis"), name("last")], "length"),  # [L]
        node("Add", [name("length"), name("block_less_1")], "length_up"),
        node("Div", [name("length_up"), name("block")], "blocks"),
        node("Mul", [name("blocks"), name("block")], "padded_length"),
        node("Sub", [name("padded_length"), name("length")], "pad_rows"),
        # Pad's pads: the begins of the 4 axes, then their ends: [0, 0, 0, 0, 0, 0, pad_rows, 0]
        node("Concat", [name("zeros_6"), name("pad_rows"), name("zero")], "pads", axis=0),
        node("Pad", [query, name("pads")], "padded", mode="constant"),
        node("Squeeze", [name("blocks")], "trips"),
        helper.make_node("Constant", [], [name("true")], value=helper.make_tensor(name("true"), TensorProto.BOOL, [], [True])),
        helper.make_node("Loop", [name("trips"), name("true")], [name("stacked")],
                         body=_body(prefix, name("padded"), key_t, value, name("block"))),
        # (blocks, N, heads, block, C) → (N, heads, blocks, block, C) → (N, heads, blocks · block, C) → the first L rows
        node("Transpose", [name("stacked")], "moved", perm=[1, 2, 0, 3, 4]),
        node("Shape", [name("moved")], "moved_shape"),
        node("Slice", [name("moved_shape"), name("zero"), name("two")], "leading"),  # [N, heads]
        node("Shape", [value], "value_shape"),
        node("Slice", [name("value_shape"), name("last"), name("end")], "channels"),  # [C]
        node("Concat", [name("leading"), name("last"), name("channels")], "joined_shape", axis=0),
        node("Reshape", [name("moved"), name("joined_shape")], "joined"),
        helper.make_node("Slice", [name("joined"), name("zero"), name("length"), name("rows_axis")], [output]),
    ]


def _body(prefix: str, padded: str, key_t: str, value: str, block: str):
    """The Loop's body: block ``i`` of the padded queries → its rows of ``softmax(Q Kᵀ) V`` (a scan output)."""
    from onnx import TensorProto, helper

    def name(suffix: str) -> str:
        return f"{prefix}_body_{suffix}"

    def constant(suffix: str, value: int):
        return helper.make_node("Constant", [], [name(suffix)],
                                value=helper.make_tensor(name(suffix), TensorProto.INT64, [1], [value]))

    nodes = [
        constant("axis0", 0),
        constant("axis_rows", -2),
        helper.make_node("Identity", [f"{prefix}_body_condition_in"], [name("condition_out")]),
        helper.make_node("Unsqueeze", [name("iteration"), name("axis0")], [name("iteration_1d")]),
        helper.make_node("Mul", [name("iteration_1d"), block], [name("start")]),
        helper.make_node("Add", [name("start"), block], [name("end")]),
        helper.make_node("Slice", [padded, name("start"), name("end"), name("axis_rows")], [name("queries")]),
        helper.make_node("MatMul", [name("queries"), key_t], [name("scores")]),
        helper.make_node("Softmax", [name("scores")], [name("weights")], axis=-1),
        helper.make_node("MatMul", [name("weights"), value], [name("rows")]),
    ]
    return helper.make_graph(
        nodes,
        f"{prefix}_body",
        [helper.make_tensor_value_info(name("iteration"), TensorProto.INT64, []),
         helper.make_tensor_value_info(f"{prefix}_body_condition_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info(name("condition_out"), TensorProto.BOOL, []),
         helper.make_tensor_value_info(name("rows"), TensorProto.FLOAT, None)],
    )
