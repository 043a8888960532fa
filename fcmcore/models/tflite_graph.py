"""Run a TensorFlow Lite flatbuffer's graph with PyTorch ops (no TensorFlow, no LiteRT).

The ``tflite`` package parses the flatbuffer (tensors, operators, options, buffers);
this module turns constants into float tensors once (float16 and int8 weights
de-quantised with their recorded scales) and executes the operators in the file's own
order with torch ops on NHWC tensors, like the TFLite interpreter does. Every tensor is
held as its *real* value (float, or int64 for index tensors); quantised activations are
either kept in float (``fake_quant=False``) or rounded to their recorded scale and zero
point after every operator (``fake_quant=True``, with a straight-through gradient so a
network can be trained through it).

``run(feeds, outputs)`` executes only the operators needed to compute ``outputs`` from
the tensors in ``feeds``: feeding an intermediate tensor runs the graph from that layer
on, which is how the task networks expose split points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ParameterError, WeightsError

# tflite TensorType -> numpy dtype.
_NP_TYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
             7: np.int16, 9: np.int8}
_QUANT_RANGE = {3: (0, 255), 9: (-128, 127), 7: (-32768, 32767)}
_SAME, _VALID = 0, 1  # tflite Padding
_ACTIVATIONS = {0: None, 1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0)}  # NONE, RELU, RELU_N1_TO_1, RELU6


@dataclass
class TensorInfo:
    index: int
    name: str
    shape: tuple[int, ...]
    type: int  # tflite TensorType
    scale: np.ndarray | None = None  # quantisation scale(s), None when not quantised
    zero_point: np.ndarray | None = None
    quantized_dim: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.type in _QUANT_RANGE


@dataclass
class Operator:
    index: int
    kind: str  # builtin operator name, e.g. CONV_2D
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)


# Builtin option tables read per operator kind: (tflite options class, {key: accessor}).
_OPTION_FIELDS = {
    "CONV_2D": ("Conv2DOptions", {"padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
                                  "act": "FusedActivationFunction", "dil_h": "DilationHFactor",
                                  "dil_w": "DilationWFactor"}),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", {
        "padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW", "act": "FusedActivationFunction",
        "dil_h": "DilationHFactor", "dil_w": "DilationWFactor", "multiplier": "DepthMultiplier"}),
    "AVERAGE_POOL_2D": ("Pool2DOptions", {"padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
                                          "filter_h": "FilterHeight", "filter_w": "FilterWidth",
                                          "act": "FusedActivationFunction"}),
    "ADD": ("AddOptions", {"act": "FusedActivationFunction"}),
    "SUB": ("SubOptions", {"act": "FusedActivationFunction"}),
    "MUL": ("MulOptions", {"act": "FusedActivationFunction"}),
    "DIV": ("DivOptions", {"act": "FusedActivationFunction"}),
    "CONCATENATION": ("ConcatenationOptions", {"axis": "Axis", "act": "FusedActivationFunction"}),
    "FULLY_CONNECTED": ("FullyConnectedOptions", {"act": "FusedActivationFunction",
                                                  "keep_dims": "KeepNumDims"}),
    "SOFTMAX": ("SoftmaxOptions", {"beta": "Beta"}),
    "PACK": ("PackOptions", {"axis": "Axis"}),
    "UNPACK": ("UnpackOptions", {"axis": "Axis", "num": "Num"}),
    "RESIZE_BILINEAR": ("ResizeBilinearOptions", {"align_corners": "AlignCorners",
                                                  "half_pixel": "HalfPixelCenters"}),
}


class TFLiteFile:
    """The parsed flatbuffer: tensor descriptions, operators, constant values (numpy)."""

    def __init__(self, path: str | Path):
        try:
            import tflite  # why: ~0.3 s; only when a task network is built
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise WeightsError("the tflite flatbuffer parser is missing: pip install tflite") from exc
        self.path = Path(path)
        try:
            buf = self.path.read_bytes()
            model = tflite.Model.GetRootAsModel(buf, 0)
            graph = model.Subgraphs(0)
            codes = [tflite.opcode2name(max(model.OperatorCodes(i).BuiltinCode(),
                                             model.OperatorCodes(i).DeprecatedBuiltinCode()))
                     for i in range(model.OperatorCodesLength())]
            self.tensors = [self._tensor(graph.Tensors(i), i) for i in range(graph.TensorsLength())]
            self.constants: dict[int, np.ndarray] = {}
            for t in self.tensors:
                data = model.Buffers(graph.Tensors(t.index).Buffer()).DataAsNumpy()
                if isinstance(data, np.ndarray) and data.size:
                    self.constants[t.index] = np.frombuffer(
                        data.tobytes(), _NP_TYPES[t.type]).reshape(t.shape)
            self.operators = [self._operator(tflite, graph.Operators(i), i, codes)
                              for i in range(graph.OperatorsLength())]
            self.inputs = [int(i) for i in graph.InputsAsNumpy()]
            self.outputs = [int(i) for i in graph.OutputsAsNumpy()]
        except (OSError, KeyError, IndexError, ValueError, TypeError, AttributeError) as exc:
            raise WeightsError(f"cannot read TFLite model {self.path.name}: {exc}") from exc

    @staticmethod
    def _tensor(t, index: int) -> TensorInfo:
        shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        info = TensorInfo(index, t.Name().decode(), shape, int(t.Type()))
        q = t.Quantization()
        if q is not None and q.ScaleLength():
            info.scale = np.asarray(q.ScaleAsNumpy(), np.float64)
            info.zero_point = np.asarray(q.ZeroPointAsNumpy(), np.int64)
            info.quantized_dim = int(q.QuantizedDimension())
        return info

    @staticmethod
    def _operator(tflite, op, index: int, codes: list[str]) -> Operator:
        kind = codes[op.OpcodeIndex()]
        options: dict[str, Any] = {}
        if kind in _OPTION_FIELDS and op.BuiltinOptions() is not None:
            cls_name, fields = _OPTION_FIELDS[kind]
            table = getattr(tflite, cls_name)()
            raw = op.BuiltinOptions()
            table.Init(raw.Bytes, raw.Pos)
            options = {key: getattr(table, acc)() for key, acc in fields.items()}
        return Operator(index, kind, tuple(int(i) for i in op.InputsAsNumpy()),
                        tuple(int(i) for i in op.OutputsAsNumpy()), options)

    def find(self, fragment: str, last: bool = True) -> int:
        """Index of the operator output whose name (its first ``;``-separated part: fused
        names list other layers after it) contains ``fragment``; the last one in execution
        order by default, i.e. a block's final tensor."""
        hits = [o for op in self.operators if op.kind != "DEQUANTIZE" for o in op.outputs
                if fragment in self.tensors[o].name.split(";")[0]]
        if not hits:
            raise WeightsError(f"{self.path.name}: no tensor named like {fragment!r}")
        return hits[-1] if last else hits[0]

    def tensor_index(self, name: str) -> int:
        """Index of the tensor called ``name``: its full name, else the unique operator
        output whose first ``;``-separated part is ``name`` (the converter joins fused
        ops' names)."""
        exact = [t.index for t in self.tensors if t.name == name]
        if exact:
            return exact[0]
        first = [o for op in self.operators if op.kind != "DEQUANTIZE" for o in op.outputs
                 if self.tensors[o].name.split(";")[0] == name]
        if len(first) != 1:
            raise WeightsError(f"{self.path.name}: {len(first)} tensors named {name!r}")
        return first[0]

    def real_constant(self, index: int) -> np.ndarray:
        """A constant's real value: float16 widened, int8/uint8 weights de-quantised (per
        channel along the recorded dimension); int32 biases of quantised ops too."""
        raw = self.constants[index]
        t = self.tensors[index]
        if t.scale is not None and t.type in (2, 3, 9) and raw.dtype != np.float32:
            shape = [1] * raw.ndim
            if t.scale.size > 1:
                shape[t.quantized_dim] = t.scale.size
            scale = t.scale.reshape(shape) if raw.ndim else t.scale[0]
            zp = t.zero_point.reshape(shape) if raw.ndim else t.zero_point[0]
            return ((raw.astype(np.float64) - zp) * scale).astype(np.float32)
        if raw.dtype == np.float16:
            return raw.astype(np.float32)
        return raw


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow SAME padding along one axis: the extra pixel goes after."""
    eff = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + eff - size, 0)
    return total // 2, total - total // 2


def _activate(x: torch.Tensor, act: int) -> torch.Tensor:
    if act not in _ACTIVATIONS:
        raise WeightsError(f"unsupported fused activation {act}")
    bounds = _ACTIVATIONS[act]
    if bounds is None:
        return x
    lo, hi = bounds
    return x.clamp(min=lo) if hi is None else x.clamp(lo, hi)


class TFLiteGraph(torch.nn.Module):
    """The graph of a ``TFLiteFile`` as torch computation (see the module docstring)."""

    def __init__(self, file: TFLiteFile, fake_quant: bool = False):
        super().__init__()
        self.file = file
        self.fake_quant = fake_quant
        self.tensors = file.tensors
        consts: dict[int, torch.Tensor] = {}
        for idx in file.constants:
            consts[idx] = self._to_torch(file.real_constant(idx))
        ops = []
        for op in file.operators:  # fold DEQUANTIZE of constants (float16 weights) at load time
            if op.kind == "DEQUANTIZE" and op.inputs[0] in consts:
                consts[op.outputs[0]] = consts[op.inputs[0]].float()
            else:
                ops.append(op)
        laid_out: set[int] = set()
        for op in ops:  # conv weights to torch layout once (a weight may be shared)
            if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D") or op.inputs[1] in laid_out:
                continue
            laid_out.add(op.inputs[1])
            if op.kind == "CONV_2D":
                consts[op.inputs[1]] = consts[op.inputs[1]].permute(0, 3, 1, 2).contiguous()  # OHWI->OIHW
            elif op.kind == "DEPTHWISE_CONV_2D":
                consts[op.inputs[1]] = consts[op.inputs[1]].permute(3, 0, 1, 2).contiguous()  # 1HWC->C1HW
        self.ops = ops
        self._consts = consts
        for idx, value in consts.items():  # buffers so .to() and state inspection see them
            self.register_buffer(f"c{idx}", value, persistent=False)
        self._producer = {o: k for k, op in enumerate(ops) for o in op.outputs}

    @staticmethod
    def _to_torch(a: np.ndarray) -> torch.Tensor:
        if a.dtype.kind == "f":
            return torch.from_numpy(np.ascontiguousarray(a, np.float32))
        return torch.from_numpy(np.ascontiguousarray(a).astype(np.int64))

    def constant(self, index: int) -> torch.Tensor:
        """A constant's real value (float16 / int8 weights de-quantised, float16 DEQUANTIZE
        outputs folded)."""
        if index not in self._consts:
            raise WeightsError(f"{self.file.path.name}: tensor {index} is not a constant")
        return self._consts[index]

    def shape(self, index: int) -> tuple[int, ...]:
        return self.tensors[index].shape

    def _plan(self, fed: set[int], outputs: list[int]) -> list[int]:
        """Indices (into ``self.ops``) of the operators needed, in execution order."""
        needed: set[int] = set()
        stack = list(outputs)
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in fed or t in self._consts or t < 0:
                continue
            seen.add(t)
            if t not in self._producer:
                name = self.tensors[t].name.split(";")[0]
                raise ParameterError(f"tensor {t} ({name}) is needed but was not fed")
            k = self._producer[t]
            needed.add(k)
            stack.extend(self.ops[k].inputs)
        return sorted(needed)

    def run(self, feeds: dict[int, torch.Tensor], outputs: list[int]) -> dict[int, torch.Tensor]:
        """Compute ``outputs`` (tensor indices) from ``feeds`` (tensor index -> real value,
        NHWC like the file). Returns every tensor computed, feeds included."""
        values: dict[int, torch.Tensor] = dict(self._consts)
        values.update(feeds)
        for k in self._plan(set(feeds), outputs):
            op = self.ops[k]
            result = self._execute(op, values)
            for idx, value in zip(op.outputs, result if isinstance(result, tuple) else (result,)):
                values[idx] = self._requantise(idx, value)
        return values

    def _requantise(self, idx: int, x: torch.Tensor) -> torch.Tensor:
        t = self.tensors[idx]
        if not self.fake_quant or not t.quantized or not x.is_floating_point():
            return x
        lo, hi = _QUANT_RANGE[t.type]
        scale, zp = float(t.scale[0]), float(t.zero_point[0])  # activations: per tensor
        q = (torch.round(x / scale) + zp).clamp(lo, hi)
        fq = (q - zp) * scale
        return x + (fq - x).detach()  # straight-through gradient

    # ----- operators -------------------------------------------------------------------

    def _execute(self, op: Operator, v: dict[int, torch.Tensor]):
        ins = [v[i] if i >= 0 else None for i in op.inputs]
        o = op.options
        kind = op.kind
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self._conv(op, ins)
        if kind == "ADD":
            return _activate(ins[0] + ins[1], o.get("act", 0))
        if kind == "SUB":
            return _activate(ins[0] - ins[1], o.get("act", 0))
        if kind == "MUL":
            return _activate(ins[0] * ins[1], o.get("act", 0))
        if kind == "DIV":
            return _activate(ins[0] / ins[1], o.get("act", 0))
        if kind == "FLOOR_DIV":
            return torch.div(ins[0], ins[1], rounding_mode="floor")
        if kind == "LOGISTIC":
            return torch.sigmoid(ins[0])
        if kind == "SQRT":
            return torch.sqrt(ins[0])
        if kind in ("QUANTIZE", "DEQUANTIZE"):
            return ins[0]  # values are real already; _requantise rounds in fake-quant mode
        if kind == "CAST":
            out_float = self.tensors[op.outputs[0]].type in (0, 1)
            return ins[0].float() if out_float else ins[0].round().long()
        if kind == "RESHAPE":
            shape = ([int(s) for s in ins[1].tolist()] if len(ins) > 1 and ins[1] is not None
                     else list(self.tensors[op.outputs[0]].shape))
            if shape and shape[0] == 1 and ins[0].shape[0] > 1 and len(self.tensors[op.inputs[0]].shape) > 1:
                shape[0] = -1  # the file was converted for batch 1: its leading 1 is the batch
            return ins[0].reshape(shape)
        if kind == "ARG_MAX":
            return torch.argmax(ins[0], dim=int(ins[1]))  # first maximum, like TFLite
        if kind == "PACK":
            return torch.stack(ins, dim=o["axis"])
        if kind == "UNPACK":
            return tuple(torch.unbind(ins[0], dim=o["axis"]))
        if kind == "CONCATENATION":
            return _activate(torch.cat(ins, dim=o["axis"]), o.get("act", 0))
        if kind == "GATHER_ND":
            params, idx = ins
            return params[tuple(idx[..., j] for j in range(idx.shape[-1]))]
        if kind == "RESIZE_BILINEAR":
            return self._resize(op, ins)
        if kind == "AVERAGE_POOL_2D":
            return self._avg_pool(op, ins[0])
        if kind == "FULLY_CONNECTED":
            y = F.linear(ins[0].reshape(-1, ins[1].shape[1]), ins[1], ins[2] if len(ins) > 2 else None)
            return _activate(y, o.get("act", 0))
        if kind == "SOFTMAX":
            return torch.softmax(ins[0] * float(o.get("beta", 1.0)), dim=-1)
        raise WeightsError(f"{self.file.path.name}: unsupported TFLite operator {kind}")

    def _conv(self, op: Operator, ins: list) -> torch.Tensor:
        x, w, b = ins[0], ins[1], ins[2] if len(ins) > 2 else None
        o = op.options
        sh, sw = o["stride_h"], o["stride_w"]
        dh, dw = o.get("dil_h", 1), o.get("dil_w", 1)
        kh, kw = w.shape[-2:]
        xc = x.permute(0, 3, 1, 2)  # NHWC -> NCHW view (channels-last memory: no copy)
        if o["padding"] == _SAME:
            top, bottom = _same_pads(xc.shape[2], kh, sh, dh)
            left, right = _same_pads(xc.shape[3], kw, sw, dw)
            if (top, left) != (bottom, right):
                xc = F.pad(xc, (left, right, top, bottom))
                pad = (0, 0)
            else:
                pad = (top, left)
        else:
            pad = (0, 0)
        groups = xc.shape[1] if op.kind == "DEPTHWISE_CONV_2D" else 1
        y = F.conv2d(xc, w, b, (sh, sw), pad, (dh, dw), groups)
        return _activate(y, o["act"]).permute(0, 2, 3, 1)

    def _resize(self, op: Operator, ins: list) -> torch.Tensor:
        o = op.options
        size = [int(s) for s in ins[1].tolist()]
        if o.get("half_pixel"):
            align = False
        elif o.get("align_corners"):
            align = True
        else:
            raise WeightsError("RESIZE_BILINEAR without half_pixel_centers or align_corners is not ported")
        y = F.interpolate(ins[0].permute(0, 3, 1, 2), size=size, mode="bilinear", align_corners=align)
        return y.permute(0, 2, 3, 1)

    def _avg_pool(self, op: Operator, x: torch.Tensor) -> torch.Tensor:
        o = op.options
        fh, fw = o["filter_h"], o["filter_w"]
        xc = x.permute(0, 3, 1, 2)
        if o["padding"] == _SAME and (xc.shape[2] % o["stride_h"] or fh != xc.shape[2]):
            raise WeightsError("AVERAGE_POOL_2D with SAME padding is only ported for global pooling")
        y = F.avg_pool2d(xc, (fh, fw), (o["stride_h"], o["stride_w"]))
        return _activate(y, o["act"]).permute(0, 2, 3, 1)
