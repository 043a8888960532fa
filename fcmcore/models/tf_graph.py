"""Read a frozen TensorFlow ``GraphDef`` (.pb) without TensorFlow or a protobuf schema.

Only the protobuf wire format is decoded, with numpy for tensor payloads. Enough of the
schema is known to return every node's name, op, inputs and attributes, and every
``Const`` node's value as a numpy array::

    graph = read_graph_def(path)
    graph.consts["FeatureExtractor/MobilenetV2/Conv/weights"]  # np.ndarray, HWIO
    graph.nodes["FeatureExtractor/MobilenetV2/Conv/Conv2D"].attr["strides"]  # [1, 2, 2, 1]

Field numbers (tensorflow/core/framework/*.proto):
GraphDef.node = 1; NodeDef name 1, op 2, input 3, device 4, attr 5 (map entry key 1, value 2);
AttrValue list 1, s 2, i 3, f 4, b 5, type 6, shape 7, tensor 8;
TensorProto dtype 1, tensor_shape 2, tensor_content 4, half_val 13, float_val 5,
double_val 6, int_val 7, string_val 8, int64_val 10, bool_val 11;
TensorShapeProto dim 2 (size 1), unknown_rank 3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import WeightsError
from ..imageio import read_regular_file

# TF DataType enum -> numpy dtype (the ones a frozen detector uses).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"),
    5: np.dtype("<i2"), 6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"),
    17: np.dtype("<u2"), 19: np.dtype("<f2"), 22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
_STRING = 7  # DT_STRING


class _WireError(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise _WireError("varint too long")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, Any]]:
    """Yield (field number, wire type, value) of one message. Length-delimited values are
    memoryviews (no copy); varints are ints; fixed 32/64 are raw 4/8-byte memoryviews."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        num, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _varint(buf, pos)
        elif wt == 2:
            n, pos = _varint(buf, pos)
            if pos + n > end:
                raise _WireError("truncated length-delimited field")
            val, pos = buf[pos:pos + n], pos + n
        elif wt == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        elif wt == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        else:
            raise _WireError(f"unsupported wire type {wt}")
        if pos > end:
            raise _WireError("truncated fixed-size field")
        yield num, wt, val


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _packed_varints(val: Any, wt: int) -> list[int]:
    if wt == 0:
        return [_signed64(val)]
    out, pos = [], 0
    while pos < len(val):
        v, pos = _varint(val, pos)
        out.append(_signed64(v))
    return out


def _shape(buf: memoryview) -> list[int] | None:
    dims: list[int] = []
    for num, _, val in _fields(buf):
        if num == 2:
            size = 0
            for n2, _, v2 in _fields(val):
                if n2 == 1:
                    size = _signed64(v2)
            dims.append(size)
        elif num == 3 and val:
            return None  # unknown rank
    return dims


def _tensor(buf: memoryview) -> np.ndarray:
    dtype_enum, shape, content = 1, [], None
    values: list[Any] = []
    for num, wt, val in _fields(buf):
        if num == 1:
            dtype_enum = val
        elif num == 2:
            shape = _shape(val) or []
        elif num == 4:
            content = val
        elif num in (5, 6):  # float_val / double_val: packed or not
            fmt = "<f" if num == 5 else "<d"
            values.extend(np.frombuffer(val, dtype=fmt).tolist() if wt == 2
                          else struct.unpack(fmt, val))
        elif num in (7, 10, 13, 11):  # int_val, int64_val, half_val (bits), bool_val
            values.extend(_packed_varints(val, wt))
        elif num == 8:  # string_val
            values.append(bytes(val))
    if dtype_enum == _STRING:
        arr = np.array(values, dtype=object)
        count = int(np.prod(shape)) if shape else 1
        return arr.reshape(shape) if arr.size == count else np.resize(arr, count).reshape(shape)
    if dtype_enum not in _DTYPES:
        raise _WireError(f"unsupported tensor dtype {dtype_enum}")
    dtype = _DTYPES[dtype_enum]
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        if len(content) % dtype.itemsize:
            raise _WireError("tensor_content size is not a multiple of the dtype size")
        arr = np.frombuffer(content, dtype=dtype).copy()  # own the memory, writable
    elif dtype_enum == 19:  # half_val holds the 16-bit patterns as ints
        arr = np.array(values, dtype=np.uint16).view(np.float16)
    else:
        arr = np.array(values, dtype=dtype)
    if arr.size == count:
        return arr.reshape(shape)
    if arr.size == 1 or (arr.size < count and arr.size > 0):
        # TF repeats the last value to fill the shape.
        filled = np.concatenate([arr, np.full(count - arr.size, arr[-1], dtype=dtype)])
        return filled.reshape(shape)
    if arr.size == 0 and count == 0:
        return arr.reshape(shape)
    raise _WireError(f"tensor has {arr.size} values for shape {shape}")


def _attr_value(buf: memoryview) -> Any:
    for num, wt, val in _fields(buf):
        if num == 2:
            return bytes(val).decode("utf-8", "replace")
        if num == 3:
            return _signed64(val)
        if num == 4:
            return struct.unpack("<f", val)[0]
        if num == 5:
            return bool(val)
        if num == 6:
            return _DTYPES.get(val, val)
        if num == 7:
            return _shape(val)
        if num == 8:
            return _tensor(val)
        if num == 1:
            return _attr_list(val)
    return None


def _attr_list(buf: memoryview) -> list[Any]:
    out: list[Any] = []
    for num, wt, val in _fields(buf):
        if num == 2:
            out.append(bytes(val).decode("utf-8", "replace"))
        elif num in (3, 6):
            out.extend(_packed_varints(val, wt))
        elif num == 4:
            out.extend(np.frombuffer(bytes(val), dtype="<f4").tolist() if wt == 2
                       else [struct.unpack("<f", val)[0]])
        elif num == 5:
            out.extend(bool(v) for v in _packed_varints(val, wt))
        elif num == 7:
            out.append(_shape(val))
        elif num == 8:
            out.append(_tensor(val))
    return out


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    nodes: dict[str, Node]  # in file order

    @property
    def consts(self) -> dict[str, np.ndarray]:
        return {n.name: n.attr["value"] for n in self.nodes.values()
                if n.op == "Const" and "value" in n.attr}

    def const(self, name: str) -> np.ndarray:
        node = self.nodes.get(name)
        if node is None or node.op != "Const":
            raise WeightsError(f"weights file has no constant {name!r}")
        return node.attr["value"]


def parse_graph_def(data: bytes) -> Graph:
    """Parse serialized ``GraphDef`` bytes. Raises ``WeightsError`` if they are not one."""
    nodes: dict[str, Node] = {}
    try:
        for num, wt, nbuf in _fields(memoryview(data)):
            if num != 1 or wt != 2:
                continue  # versions, library...
            node = Node(name="", op="")
            for n2, wt2, val in _fields(nbuf):
                if n2 == 1:
                    node.name = bytes(val).decode()
                elif n2 == 2:
                    node.op = bytes(val).decode()
                elif n2 == 3:
                    node.inputs.append(bytes(val).decode())
                elif n2 == 5:
                    key, value = "", None
                    for n3, _, v3 in _fields(val):
                        if n3 == 1:
                            key = bytes(v3).decode()
                        elif n3 == 2:
                            value = _attr_value(v3)
                    node.attr[key] = value
            nodes[node.name] = node
    except (_WireError, UnicodeDecodeError, ValueError, struct.error) as exc:
        raise WeightsError(f"not a valid TensorFlow GraphDef: {exc}") from None
    if not nodes:
        raise WeightsError("not a valid TensorFlow GraphDef: no nodes")
    return Graph(nodes)


MAX_GRAPH_BYTES = 1 << 30  # frozen detector graphs are tens of MB


def read_graph_def(path: str | Path) -> Graph:
    """Read a frozen graph file (.pb). Raises ``WeightsError`` if missing or corrupt."""
    data = read_regular_file(path, MAX_GRAPH_BYTES, label=f"cannot read weights file {path}", error=WeightsError)
    return parse_graph_def(data)
