"""Run an ONNX graph as a differentiable torch module (enough ops for insightface ArcFace models).

onnxruntime cannot pass gradients back to its input, and the face-identity loss needs them, so the
recognition network is re-executed with torch ops: initializers become frozen parameters (float)
or buffers (integer), and nodes run in topological order. The op set covers insightface's
recognition models (iresnet w600k_r50 / glint360k_r100, MobileFaceNet, mxnet conversions with an
in-graph Sub/Mul input normalisation); anything else fails early with the op and file named.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["OnnxModule", "SUPPORTED_OPS", "load_onnx"]


def load_onnx(path: str | Path):
    """Load an ONNX ModelProto from a local file (FileNotFoundError names the file)."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    return onnx.load(str(path))


def _attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _to_tensor(proto) -> torch.Tensor:
    from onnx import numpy_helper

    # copy(): numpy_helper may return a read-only view of the protobuf bytes.
    return torch.from_numpy(np.array(numpy_helper.to_array(proto), copy=True))


def _ints(t: torch.Tensor | Sequence[int]) -> list[int]:
    return [int(v) for v in (t.flatten().tolist() if isinstance(t, torch.Tensor) else t)]


# ---- op implementations: (inputs, attrs) -> outputs; missing optional inputs are None ----------

def _conv(xs: list, a: dict) -> list:
    x, w = xs[0], xs[1]
    b = xs[2] if len(xs) > 2 else None
    nd = w.dim() - 2
    if nd not in (1, 2, 3):
        raise NotImplementedError(f"Conv with {nd} spatial dims")
    strides = list(a.get("strides", [1] * nd))
    dil = list(a.get("dilations", [1] * nd))
    k = list(a.get("kernel_shape", w.shape[2:]))
    pads = list(a.get("pads", [0] * (2 * nd)))
    auto_pad = a.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * nd)
        for i in range(nd):
            size = x.shape[2 + i]
            out = math.ceil(size / strides[i])
            total = max(0, (out - 1) * strides[i] + (k[i] - 1) * dil[i] + 1 - size)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + nd] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
    elif auto_pad == "VALID":
        pads = [0] * (2 * nd)
    begin, end = pads[:nd], pads[nd:]
    if begin != end:
        # F.pad lists the last dimension first.
        flat = []
        for i in reversed(range(nd)):
            flat += [begin[i], end[i]]
        x = F.pad(x, flat)
        begin = [0] * nd
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    return [conv(x, w, b, stride=strides, padding=begin, dilation=dil, groups=int(a.get("group", 1)))]


def _batchnorm(xs: list, a: dict) -> list:
    if a.get("training_mode", 0):
        raise NotImplementedError("BatchNormalization with training_mode=1")
    x, scale, bias, mean, var = xs[:5]
    # Inference statistics always: the recognition net is a frozen feature extractor.
    return [F.batch_norm(x, mean, var, scale, bias, training=False, eps=float(a.get("epsilon", 1e-5)))]


def _prelu(xs: list, a: dict) -> list:
    x, slope = xs
    # ONNX broadcasts the slope unidirectionally (numpy rules), which torch.where reproduces.
    return [torch.where(x >= 0, x, x * slope)]


def _div(xs: list, a: dict) -> list:
    x, y = xs
    if not x.is_floating_point() and not y.is_floating_point():
        return [torch.div(x, y, rounding_mode="trunc")]
    return [x / y]


def _flatten(xs: list, a: dict) -> list:
    x = xs[0]
    axis = int(a.get("axis", 1))
    axis = axis + x.dim() if axis < 0 else axis
    lead = int(np.prod(x.shape[:axis])) if axis else 1
    return [x.reshape(lead, -1)]


def _gemm(xs: list, a: dict) -> list:
    m, n = xs[0], xs[1]
    c = xs[2] if len(xs) > 2 else None
    if a.get("transA", 0):
        m = m.t()
    if a.get("transB", 0):
        n = n.t()
    y = float(a.get("alpha", 1.0)) * (m @ n)
    if c is not None:
        y = y + float(a.get("beta", 1.0)) * c
    return [y]


def _reshape(xs: list, a: dict) -> list:
    x, shape = xs[0], _ints(xs[1])
    if not a.get("allowzero", 0):
        # 0 means "keep this input dimension" unless allowzero is set.
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return [x.reshape(shape)]


def _transpose(xs: list, a: dict) -> list:
    x = xs[0]
    perm = a.get("perm", list(reversed(range(x.dim()))))
    return [x.permute(*perm)]


def _dropout(xs: list, a: dict) -> list:
    # Inference: identity, and an all-true mask for graphs that ask for the second output.
    return [xs[0], torch.ones_like(xs[0], dtype=torch.bool)]


def _constant(xs: list, a: dict) -> list:
    if "value" in a:
        return [_to_tensor(a["value"])]
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in a:
            return [torch.tensor(a[key], dtype=dtype)]
    raise NotImplementedError(f"Constant with attributes {sorted(a)}")


def _global_avg_pool(xs: list, a: dict) -> list:
    x = xs[0]
    return [x.mean(dim=tuple(range(2, x.dim())), keepdim=True)]


def _shape(xs: list, a: dict) -> list:
    dims = list(xs[0].shape)
    start, end = a.get("start", 0), a.get("end", len(dims))
    # Same device as the data so later Concat/Gather with device-resident constants line up.
    return [torch.tensor(dims[start:end], dtype=torch.int64, device=xs[0].device)]


def _gather(xs: list, a: dict) -> list:
    data, idx = xs
    axis = int(a.get("axis", 0)) % data.dim()
    idx = idx.to(torch.int64) % data.shape[axis]  # negative indices count from the end
    picked = data.index_select(axis, idx.flatten().to(data.device))
    return [picked.reshape((*data.shape[:axis], *idx.shape, *data.shape[axis + 1:]))]


def _unsqueeze(xs: list, a: dict) -> list:
    x = xs[0]
    # opset < 13 passes axes as an attribute, opset >= 13 as a second input.
    axes = _ints(xs[1]) if len(xs) > 1 and xs[1] is not None else list(a["axes"])
    rank = x.dim() + len(axes)
    for ax in sorted(ax % rank for ax in axes):
        x = x.unsqueeze(ax)
    return [x]


_OPS: dict[str, Callable[[list, dict], list]] = {
    "Conv": _conv,
    "BatchNormalization": _batchnorm,
    "PRelu": _prelu,
    "Relu": lambda xs, a: [F.relu(xs[0])],
    "Sigmoid": lambda xs, a: [torch.sigmoid(xs[0])],
    "Add": lambda xs, a: [xs[0] + xs[1]],
    "Sub": lambda xs, a: [xs[0] - xs[1]],
    "Mul": lambda xs, a: [xs[0] * xs[1]],
    "Div": _div,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "MatMul": lambda xs, a: [torch.matmul(xs[0], xs[1])],
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Identity": lambda xs, a: [xs[0]],
    "Dropout": _dropout,
    "Constant": _constant,
    "GlobalAveragePool": _global_avg_pool,
    "Concat": lambda xs, a: [torch.cat(list(xs), dim=int(a["axis"]))],
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
}
SUPPORTED_OPS = frozenset(_OPS)


def _topological(nodes: Sequence, available: set[str]) -> list:
    """Order nodes so every input is produced first (ONNX asks for this, not every exporter obeys)."""
    pending = list(nodes)
    done = set(available) | {""}
    order = []
    while pending:
        ready = [n for n in pending if all(i in done for i in n.input)]
        if not ready:
            missing = sorted({i for n in pending for i in n.input if i not in done})
            raise ValueError(f"ONNX graph has a cycle or undefined inputs: {missing[:10]}")
        for n in ready:
            order.append(n)
            done.update(n.output)
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
    return order


class OnnxModule(nn.Module):
    """Torch re-execution of an ONNX graph; forward(*inputs) returns one tensor or a tuple."""

    def __init__(self, model, source: str = "<in-memory model>", trainable: bool = False) -> None:
        super().__init__()
        graph = model.graph
        self.source = source
        unsupported = sorted({n.op_type for n in graph.node if n.domain not in ("", "ai.onnx")
                              or n.op_type not in _OPS})
        if unsupported:
            raise NotImplementedError(
                f"ONNX op(s) {unsupported} in {source} are not supported by the torch interpreter "
                f"(supported: {sorted(_OPS)})")
        # Parameter names may not contain dots, ONNX names may: keep a name -> attribute map.
        self._slots: dict[str, str] = {}
        for i, init in enumerate(graph.initializer):
            t = _to_tensor(init)
            slot = f"init_{i}"
            if t.is_floating_point():
                self.register_parameter(slot, nn.Parameter(t, requires_grad=trainable))
            else:
                self.register_buffer(slot, t)
            self._slots[init.name] = slot
        # Older exporters list initializers among the graph inputs as well.
        self.input_names = [v.name for v in graph.input if v.name not in self._slots]
        self.output_names = [v.name for v in graph.output]
        self.input_shapes = [_static_shape(v) for v in graph.input if v.name not in self._slots]
        self.output_shapes = [_static_shape(v) for v in graph.output]
        self._nodes = []
        for n in _topological(graph.node, set(self._slots) | set(self.input_names)):
            if n.op_type == "Constant":
                # Evaluated once and kept as a buffer, so .to(device) moves it with the weights.
                slot = f"const_{len(self._slots)}"
                self.register_buffer(slot, _constant([], _attrs(n))[0])
                self._slots[n.output[0]] = slot
                continue
            self._nodes.append((n.op_type, list(n.input), list(n.output), _attrs(n), n.name or n.op_type))
        self.node_names = [n.name for n in graph.node]

    @classmethod
    def from_file(cls, path: str | Path, trainable: bool = False) -> OnnxModule:
        """Build the module from a local .onnx file."""
        return cls(load_onnx(path), source=str(path), trainable=trainable)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """Run the graph on positional inputs in graph-input order."""
        if len(inputs) != len(self.input_names):
            raise ValueError(f"{self.source}: expected {len(self.input_names)} input(s) "
                             f"{self.input_names}, got {len(inputs)}")
        env: dict[str, torch.Tensor | None] = {"": None}
        for name, slot in self._slots.items():
            env[name] = getattr(self, slot)
        env.update(zip(self.input_names, inputs, strict=True))
        for op, ins, outs, attrs, name in self._nodes:
            try:
                results = _OPS[op]([env[i] for i in ins], attrs)
            except NotImplementedError as exc:
                raise NotImplementedError(f"{self.source} (node {name}): {exc}") from exc
            # Ops may return optional outputs (Dropout's mask) that the node does not name.
            for out, val in zip(outs, results, strict=False):
                if out:
                    env[out] = val
        result = tuple(env[n] for n in self.output_names)
        return result[0] if len(result) == 1 else result


def _static_shape(value_info) -> tuple[int | None, ...]:
    dims = value_info.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
