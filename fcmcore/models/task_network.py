"""Secondary-task networks (pose, classification) that can be entered at a named layer.

A ``TaskNetwork`` wraps one TFLite graph run by ``tflite_graph.TFLiteGraph``. It exposes
split points by name: ``features(image, split)`` runs the network from the image up to
that layer and ``from_split(tensor, split, meta)`` runs it from that layer to its result,
so a connector can feed an intermediate tensor. Split tensors cross the API as NCHW
``(1, C, H, W)`` float tensors like the detector's; inside, the graph keeps TFLite's NHWC.

Every network resizes the whole image to its square input without keeping the aspect
ratio, like the detector does: the pixel under a detector feature is then the pixel under
the task network's feature at the same relative position, which is what lets a small
connector map one to the other.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from PIL import Image

from ..errors import ParameterError, UnknownNameError, WeightsError
from ..registry import TASK_NETWORKS
from .base import ImageMeta
from .bundled import bundled_model_file
from .tflite_graph import TFLiteFile, TFLiteGraph


@dataclass(frozen=True)
class TaskSplit:
    """A named layer of a task network: the tensor index in the graph and its NCHW shape."""

    name: str
    tensor: int
    shape: tuple[int, int, int]  # C, H, W
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "description": self.description}


class TaskNetwork:
    """Base class: subclasses set ``name``, ``task``, ``input_size``, ``filename`` and
    implement ``_split_table`` and ``_result`` (raw graph outputs -> task result)."""

    name = ""
    task = ""
    input_size = 0
    filename = ""
    fake_quant = False

    def __init__(self, path: str | Path | None = None, fake_quant: bool | None = None):
        self.file = TFLiteFile(path if path is not None else bundled_model_file(self.filename))
        self.graph = TFLiteGraph(self.file, fake_quant=self.fake_quant if fake_quant is None else fake_quant)
        self.graph.eval()
        for p in self.graph.parameters():
            p.requires_grad_(False)
        self.input_index = self.file.inputs[0]
        self._splits = {s.name: s for s in self._split_table()}

    # ----- subclass hooks ----------------------------------------------------------------

    def _split_table(self) -> list[TaskSplit]:
        raise NotImplementedError

    def output_tensors(self) -> list[int]:
        """Graph tensors ``_result`` needs."""
        return list(self.file.outputs)

    def _result(self, values: dict[int, torch.Tensor], meta: ImageMeta):
        raise NotImplementedError

    # ----- structure ---------------------------------------------------------------------

    def _make_split(self, name: str, tensor: int, description: str) -> TaskSplit:
        shape = self.file.tensors[tensor].shape
        if len(shape) != 4:
            raise WeightsError(f"{self.name}: split {name} is not a 4-D tensor")
        return TaskSplit(name, tensor, (shape[3], shape[1], shape[2]), description)

    def split_points(self) -> list[TaskSplit]:
        return list(self._splits.values())

    def split(self, name: str) -> TaskSplit:
        try:
            return self._splits[name]
        except KeyError:
            known = ", ".join(self._splits)
            raise UnknownNameError(f"unknown split {name!r} for {self.name}; known: {known}") from None

    # ----- computation -------------------------------------------------------------------

    def input_pixels(self, image: Image.Image) -> np.ndarray:
        """The uint8 (1, S, S, 3) array the network's input takes (the reference runtime is
        fed exactly this in the tests)."""
        if not isinstance(image, Image.Image):
            raise ParameterError(f"{self.name} expects a PIL image, got {type(image).__name__}")
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        s = self.input_size
        return cv2.resize(rgb, (s, s), interpolation=cv2.INTER_LINEAR)[None]

    def preprocess(self, image: Image.Image) -> tuple[torch.Tensor, ImageMeta]:
        """Input tensor (real values, NHWC) and the image's metadata."""
        x = torch.from_numpy(self.input_pixels(image).astype(np.float32))
        t = self.file.tensors[self.input_index]
        if t.quantized:  # the input's real value is (pixel - zero point) * scale
            x = (x - float(t.zero_point[0])) * float(t.scale[0])
        return x, ImageMeta(width=image.width, height=image.height)

    def features(self, image: Image.Image, split: str) -> torch.Tensor:
        """The (1, C, H, W) tensor at ``split`` for ``image`` (the teacher for connectors)."""
        sp = self.split(split)
        x, _ = self.preprocess(image)
        return self.features_from_input(x, sp.name)

    def features_from_input(self, x: torch.Tensor, split: str) -> torch.Tensor:
        sp = self.split(split)
        values = self.graph.run({self.input_index: x}, [sp.tensor])
        return values[sp.tensor].permute(0, 3, 1, 2)

    def raw_from_split(self, t: torch.Tensor, split: str, outputs: list[int] | None = None) -> dict:
        """Graph tensors (NHWC, differentiable) computed from a (1, C, H, W) tensor at ``split``."""
        sp = self.split(split)
        if not isinstance(t, torch.Tensor) or t.dim() != 4 or tuple(t.shape[1:]) != sp.shape:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ParameterError(f"split {split} of {self.name} expects (N, {', '.join(map(str, sp.shape))}), got {got}")
        return self.graph.run({sp.tensor: t.float().permute(0, 2, 3, 1)},
                              outputs if outputs is not None else self.output_tensors())

    def from_split(self, t: torch.Tensor, split: str, meta: ImageMeta):
        """The task result from a (1, C, H, W) tensor at ``split`` (e.g. a connector's output)."""
        with torch.inference_mode():
            return self._result(self.raw_from_split(t, split), meta)

    def predict(self, image: Image.Image):
        """The task result of the whole network on ``image`` (the uncompressed reference)."""
        x, meta = self.preprocess(image)
        with torch.inference_mode():
            return self._result(self.graph.run({self.input_index: x}, self.output_tensors()), meta)


_cache: dict[str, TaskNetwork] = {}
_lock = threading.Lock()


def load_task_network(task: str) -> TaskNetwork:
    """The network for ``task`` ("pose" or "classification"), built once per process
    (weights read from the installed package on first use)."""
    factory = TASK_NETWORKS.factory(task)  # UnknownNameError lists the known tasks
    with _lock:
        if task not in _cache:
            # built once and shared: weights made inside a caller's inference_mode would be
            # inference tensors, which autograd refuses (connector training backprops through them)
            with torch.inference_mode(False):
                _cache[task] = factory()
        return _cache[task]
