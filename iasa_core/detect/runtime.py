"""Model runtimes for the DWPose networks: onnxruntime (CPU or CUDA) and TorchScript.

Both take one numpy batch and return the model's outputs as a list of float32 numpy arrays, so
the pre- and post-processing in :mod:`yolox` and :mod:`wholebody` never sees which one runs.
The kind is picked by file extension: ``.onnx`` -> :class:`OnnxRuntime`; ``.torchscript.pt``,
``.pt``, ``.pth``, ``.jit`` -> :class:`TorchScriptRuntime`.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from abc import ABC, abstractmethod

import numpy as np

log = logging.getLogger(__name__)

ONNX_EXTENSIONS = (".onnx",)
TORCHSCRIPT_EXTENSIONS = (".torchscript.pt", ".pt", ".pth", ".jit")

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
}


def _is_cuda(device: str) -> bool:
    return str(device).lower().startswith("cuda")


def _cuda_index(device: str) -> int:
    _, _, idx = str(device).partition(":")
    return int(idx) if idx.isdigit() else 0


class Runtime(ABC):
    """One loaded network. ``run(x)`` -> list of float32 arrays (the model's outputs in order)."""

    path: str
    device: str
    #: static input shape (None for a dynamic or unknown dimension), or None when unknown
    input_shape: tuple | None = None
    #: a batch size the model only accepts (e.g. 1 for a static ONNX export, 5 for the `_bs5`
    #: TorchScript export); None when any batch size is accepted
    fixed_batch: int | None = None

    @abstractmethod
    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one batch (N, C, H, W) and return every output as float32 numpy."""

    def run_batched(self, x: np.ndarray) -> list[np.ndarray]:
        """Run any batch size on a model with a fixed batch: split, zero-pad the last chunk, cut."""
        n = int(x.shape[0])
        b = self.fixed_batch
        if b is None or n == b:
            return self.run(x)
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, b):
            chunk = x[start:start + b]
            real = chunk.shape[0]
            if real < b:
                pad = np.zeros((b - real,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = np.concatenate([chunk, pad], axis=0)
            parts.append([o[:real] for o in self.run(chunk)])
        return [np.concatenate([p[i] for p in parts], axis=0) for i in range(len(parts[0]))]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({os.path.basename(self.path)!r}, device={self.device!r})"


class OnnxRuntime(Runtime):
    """onnxruntime session; CUDAExecutionProvider when ``device`` is cuda and it is available."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        try:
            import onnxruntime as ort
        except ImportError as exc:  # pragma: no cover - onnxruntime is a hard dependency
            raise RuntimeError(f"{path}: loading an .onnx model needs onnxruntime "
                               "(pip install onnxruntime, or onnxruntime-gpu for CUDA)") from exc
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such model file")
        available = ort.get_available_providers()
        want_cuda = _is_cuda(device)
        providers: list = ["CPUExecutionProvider"]
        if want_cuda and "CUDAExecutionProvider" in available:
            providers = [("CUDAExecutionProvider", {"device_id": _cuda_index(device)}), "CPUExecutionProvider"]
        elif want_cuda:
            log.warning("DWPose: %s asked for %s but onnxruntime has no CUDAExecutionProvider "
                        "(available: %s; install onnxruntime-gpu, or use the TorchScript files); using CPU",
                        os.path.basename(self.path), device, ", ".join(available))
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=providers)
        except Exception as exc:
            if len(providers) == 1:
                raise RuntimeError(f"{self.path}: onnxruntime could not load the model: {exc}") from exc
            log.warning("DWPose: CUDA session for %s failed (%s); falling back to CPU",
                        os.path.basename(self.path), exc)
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=["CPUExecutionProvider"])
        self.providers = list(self.session.get_providers())
        self.device = "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"
        log.info("DWPose: %s on onnxruntime %s", os.path.basename(self.path), self.providers[0])

        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_dtype = _ORT_DTYPES.get(inp.type, np.float32)
        self.input_shape = tuple(d if isinstance(d, int) and d > 0 else None for d in inp.shape)
        first = self.input_shape[0] if self.input_shape else None
        self.fixed_batch = first
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = [tuple(d if isinstance(d, int) and d > 0 else None for d in o.shape)
                              for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        x = np.ascontiguousarray(x, dtype=self.input_dtype)
        outs = self.session.run(self.output_names, {self.input_name: x})
        return [np.asarray(o, dtype=np.float32) for o in outs]


class TorchScriptRuntime(Runtime):
    """``torch.jit.load`` model; input cast to the dtype of its parameters (fp16 exports work)."""

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        import torch

        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: no such model file")
        if _is_cuda(device) and not torch.cuda.is_available():
            log.warning("DWPose: %s asked for %s but torch has no CUDA; using CPU",
                        os.path.basename(self.path), device)
            device = "cpu"
        self.device = str(device)
        try:
            with warnings.catch_warnings():  # torch >= 2.10 marks TorchScript deprecated; it still loads
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(self.path, map_location=self.device)
        except Exception as exc:
            raise RuntimeError(f"{self.path}: not a TorchScript file torch.jit.load can read ({exc})") from exc
        self.module.eval()
        param = next(iter(self.module.parameters()), None)
        if param is None:
            param = next(iter(self.module.buffers()), None)
        self.dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        # controlnet_aux's DWPose export is traced with a batch of 5 (`..._bs5.torchscript.pt`).
        m = re.search(r"_bs(\d+)", os.path.basename(self.path))
        self.fixed_batch = int(m.group(1)) if m else None
        log.info("DWPose: %s on TorchScript %s (%s)", os.path.basename(self.path), self.device,
                 str(self.dtype).replace("torch.", ""))

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, self.dtype)
        with torch.inference_mode():
            out = self.module(t)
        if isinstance(out, torch.Tensor):
            out = [out]
        return [o.detach().float().cpu().numpy() for o in out]


def runtime_kind(path: str | os.PathLike) -> str:
    """"onnx" or "torchscript" from the file name; ValueError for anything else."""
    name = os.fspath(path).lower()
    if name.endswith(ONNX_EXTENSIONS):
        return "onnx"
    if name.endswith(TORCHSCRIPT_EXTENSIONS):
        return "torchscript"
    raise ValueError(f"{os.fspath(path)}: unknown model format; expected a file ending in "
                     f"{', '.join(ONNX_EXTENSIONS + TORCHSCRIPT_EXTENSIONS)}")


def load_runtime(path: str | os.PathLike, device: str = "cpu") -> Runtime:
    """Open a model file with the runtime its extension names."""
    if runtime_kind(path) == "onnx":
        return OnnxRuntime(path, device)
    return TorchScriptRuntime(path, device)
