"""Direct coding: a light student from the model input straight to the coded split latent.

Edge side (what replaces the detector's head)::

    model input (1, 3, 300, 300)
      -> the detector's stem (Conv, expanded_conv: frozen, 37 M MACs)
      -> student: the detector's blocks up to the split with every expansion thinned to half
         its channels (119 M MACs instead of 238 M), initialised from the detector (channels
         with the largest weight norms; each projection refitted by least squares on 32 train
         samples, block by block) and then distilled: student(x) ~ head(x)
      -> the hyperprior codec's analysis (gain, g_a, h_a, h_s) -> one rANS stream

Server side: the hyperprior codec's decoder and synthesis give the split tensor, which the
detector's tail finishes. ``edge_macs()`` counts the stem, the student and the encoder.
(``--student light``, a from-scratch depthwise stack of ~41 M MACs, is also available; with
72 training images it only reached a normalised MSE of ~0.7: too little data to learn the
head from scratch.)

Training (``fcm train-direct``), on the augmented train bank (model inputs kept):

1. distillation: MSE between normalise(student(x)) and normalise(head(x)), ``distill_epochs``;
2. per lambda: start from the trained ``hyperprior`` codec of the same lambda and fine-tune
   it end to end on the frozen student's outputs with ``R + lambda * MSE(decoded,
   normalise(head(x)))``: its decoder learns to undo part of the student's error.

Options (``direct_training``): ``--student full`` (the detector's own blocks and weights: the
student *is* the head, so this is model splitting + a fine-tuned hyperprior codec),
``--distill-layer L`` (distillation and codec distortion at a deeper layer through the frozen
detector remainder), ``--joint`` (student and codec fine-tuned together per lambda).

Weights: ``assets/learned/direct/student.safetensors`` + ``q<i>.safetensors`` (hyperprior
networks) + ``manifest.json``; with ``--joint`` each quality names its own student file in
its manifest entry (``student``). Bitstream: the container of ``codec`` with codec id 4 (the
decoder never needs the student).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ..coding.base import MODEL_INPUT, Encoded
from ..errors import BitstreamError, ParameterError, WeightsError
from ..models import load_model
from ..registry import CODECS
from .codec import LearnedCodecBase
from .direct_student import STUDENT_FILE, StudentTrunk, build_student, prefix, prefix_macs, student_macs


@CODECS.register("direct")
class DirectCodec(LearnedCodecBase):
    """``direct``: model input -> coded split latent (see the module docstring)."""

    name = "direct"
    arch = "direct"
    description = ("direct coding: light student (detector stem + depthwise convs) from the image to the "
                   "split latent, coded with a hyperprior entropy model")
    consumes = MODEL_INPUT  # replaces the head: reads the model input, not the split tensors
    supports_images = False
    train_hint = "fcm train-direct"

    def __init__(self, weights_dir: str | Path | None = None):
        super().__init__(weights_dir)
        self._students: dict[str, StudentTrunk] = {}  # by file name

    def _student_entry(self, quality: int | None) -> dict[str, Any]:
        """The student file of ``quality``: its own (``--joint``: one student per lambda) or the shared one."""
        if quality is not None:
            own = self.manifest["qualities"][quality - 1].get("student")
            if own:
                return own
        return self.manifest["student"]

    def available(self) -> tuple[bool, str]:
        ok, reason = super().available()
        if ok:
            files = {self._student_entry(q).get("file", STUDENT_FILE) for q in range(1, len(self.manifest["qualities"]) + 1)}
            missing = sorted(f for f in files if not (self.weights_dir / f).is_file())
            if missing:
                return False, f"student weights missing in {self.weights_dir}: {', '.join(missing)}"
        return ok, reason

    def _student_net(self, quality: int | None = None) -> StudentTrunk:
        with self._lock:
            entry = self._student_entry(quality)
            if entry["file"] not in self._students:
                self.require_available()
                path = self.weights_dir / entry["file"]
                data = path.read_bytes()
                if entry.get("sha256") and hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise WeightsError(f"codec direct: {path} does not match its manifest (sha256)")
                try:
                    net = build_student(self.manifest["student"])  # the architecture is shared by all qualities
                    state = {k: v.float() for k, v in load_file(str(path)).items()}
                    net.load_state_dict(state)
                except Exception as exc:
                    raise WeightsError(f"codec direct: unusable student weights {path} ({exc})") from None
                self._students[entry["file"]] = net.eval()
            return self._students[entry["file"]]

    def _model(self):
        return load_model(self.manifest["model"])

    def _check_input(self, x) -> torch.Tensor:
        shape = tuple(self.manifest.get("input_shape", (3, 300, 300)))
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape) != (1, *shape) or not x.is_floating_point():
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ParameterError(f"direct: expects the {self.manifest['model']} input, a float (1, {', '.join(map(str, shape))}) "
                                 f"tensor; got {got}")
        if not torch.isfinite(x).all():
            raise ParameterError("direct: input contains NaN or infinity")
        return x.detach().float()

    def _student_normalized(self, x: torch.Tensor, net, quality: int) -> torch.Tensor:
        s = self._student_net(quality)(prefix(self._model(), x))
        return net.normalize(s) if self.manifest["student"].get("output") == "raw" else s

    def student_features(self, x: torch.Tensor, quality=None) -> torch.Tensor:
        """The student's estimate of the split tensor (detector scale, before coding)."""
        q = self.check_quality(quality)
        net = self._net(q)
        with torch.inference_mode():
            return net.denormalize(self._student_normalized(self._check_input(x), net, q))

    def encode(self, source: torch.Tensor, quality=None, *, channel_weights=None) -> Encoded:
        """``source``: the model input (1, 3, 300, 300), what the head would have seen."""
        q = self.check_quality(quality)
        self.require_available()
        x = self._check_input(source)
        net = self._net(q)
        with self._lock, torch.inference_mode():
            s = self._student_normalized(x, net, q)
            out = net.compress_norm(s, synthesize=False)
        return self._encoded(q, s.shape[1:], self.manifest["tensor"], out)

    def _check_stream_shape(self, c: int, h: int, w: int) -> None:
        if [c, h, w] != list(self.manifest["shape"]):
            m = self.manifest
            raise BitstreamError(f"direct: stream shape {c}x{h}x{w}, expected {'x'.join(map(str, m['shape']))}")

    def edge_macs(self, head_macs: int | None = None, quality: int | None = None) -> int:
        """MACs on the edge: detector stem + student + the codec's encoder (g_a, hyper-prior);
        the detector's head does not run (``head_macs`` is not counted)."""
        self.require_available()
        q = self.check_quality(quality)
        shape = tuple(self.manifest.get("input_shape", (3, 300, 300)))
        model = self._model()
        c, h, w = self.manifest["shape"]
        if ("edge", q) not in self._macs:  # once per quality: counting is a hooked run
            self._macs[("edge", q)] = (prefix_macs(model) + student_macs(self._student_net(q), model, shape)
                                       + self._net(q).encoder_macs(h, w))
        return self._macs[("edge", q)]

    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        if self._manifest is not None:
            d["input_shape"] = self._manifest.get("input_shape")
        return d
