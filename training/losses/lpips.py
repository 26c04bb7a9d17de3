"""LPIPS perceptual distance (Zhang et al. 2018, version 0.1) in plain torch, without torchvision.

The architecture matches the reference implementation (the `lpips` package, 0.1): a fixed input
scaling, five ReLU taps of an AlexNet or VGG16 trunk laid out exactly like torchvision's
`features`, channel-wise unit normalisation, squared differences, a non-negative 1x1 "lin" head
per tap, spatial mean and a sum over taps. Weights only ever come from local files: the
torchvision trunk checkpoint and the package's `weights/v0.1/<net>.pth` heads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

__all__ = ["LPIPS", "LPIPSWeightsError", "NETS", "load_state_file"]

# One entry per torchvision `features` index: ("conv", in, out, kernel, stride, pad), ("relu",),
# ("pool", kernel, stride). Keeping torchvision's indices lets the trunk checkpoint load by name.
_ALEX = (
    ("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2),
    ("conv", 64, 192, 5, 1, 2), ("relu",), ("pool", 3, 2),
    ("conv", 192, 384, 3, 1, 1), ("relu",),
    ("conv", 384, 256, 3, 1, 1), ("relu",),
    ("conv", 256, 256, 3, 1, 1), ("relu",),
)


def _vgg16_layers() -> tuple[tuple, ...]:
    """VGG16 `features` up to relu5_3 (torchvision indices 0..29)."""
    layers: list[tuple] = []
    cin = 3
    for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))):
        if stage:
            layers.append(("pool", 2, 2))
        for _ in range(convs):
            layers += [("conv", cin, width, 3, 1, 1), ("relu",)]
            cin = width
    return tuple(layers)


# taps: the `features` index whose output is read (relu1..relu5 for AlexNet, reluX_2/X_3 for VGG).
NETS: dict[str, dict] = {
    "alex": {"layers": _ALEX, "taps": (1, 4, 7, 9, 11), "channels": (64, 192, 384, 256, 256),
             "trunk_file": "alexnet-owt-7be5be79.pth"},
    "vgg": {"layers": _vgg16_layers(), "taps": (3, 8, 15, 22, 29), "channels": (64, 128, 256, 512, 512),
            "trunk_file": "vgg16-397923af.pth"},
}
_ALIASES = {"alexnet": "alex", "vgg16": "vgg"}

# Input scaling of LPIPS v0.1 (ImageNet statistics re-expressed for inputs in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_EPS = 1e-10

_TRUNK_KEY = re.compile(r"^(?:features\.|net\.slice\d\.)?(\d+)\.(weight|bias)$")
_LIN_KEY = re.compile(r"^lin(\d)\.model\.(?:1\.)?weight$")


class LPIPSWeightsError(ValueError):
    """A weights file does not hold what the LPIPS network expects."""


def _canonical_net(net: str) -> str:
    name = _ALIASES.get(net, net)
    if name not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose from {sorted(NETS)}")
    return name


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat tensor dict from a .pth/.pt (weights_only) or .safetensors file on CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path), device="cpu")
    else:
        # weights_only: a checkpoint is data, never code to execute.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise LPIPSWeightsError(f"{path}: expected a flat dict of tensors, got {type(state).__name__}")
    return dict(state)


class LPIPS(nn.Module):
    """LPIPS distance: forward(x, y) with x, y (N, 3, H, W) in [-1, 1] returns (N,)."""

    def __init__(self, net: str = "alex", pretrained: bool = False, seed: int = 0) -> None:
        super().__init__()
        if pretrained:
            raise ValueError("LPIPS never downloads weights: use LPIPS.from_files(net, backbone_path, lin_path)")
        self.net = _canonical_net(net)
        spec = NETS[self.net]
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.taps: tuple[int, ...] = spec["taps"]
        self.channels: tuple[int, ...] = spec["channels"]
        # Build under a private RNG so the random weights depend on `seed` only, and callers'
        # global RNG streams are left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.features = nn.Sequential(*[_make_layer(s) for s in spec["layers"][: self.taps[-1] + 1]])
            self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.channels)
            for lin in self.lins:
                # Trained heads are non-negative (the reference clamps them), so the distance stays
                # >= 0; random heads mimic that so tests and weight-less setups behave alike.
                nn.init.uniform_(lin.weight, 0.0, 1.0 / len(self.channels))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_files(cls, net: str, backbone_path: str | Path, lin_path: str | Path) -> LPIPS:
        """Build LPIPS from a torchvision trunk checkpoint and the lpips package's v0.1 head file."""
        net = _canonical_net(net)
        model = cls(net)
        hints = {
            "backbone": f"torchvision's {NETS[net]['trunk_file']} (https://download.pytorch.org/models/)",
            "lin": f"the lpips package's lpips/weights/v0.1/{net}.pth",
        }
        for kind, path in (("backbone", backbone_path), ("lin", lin_path)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"LPIPS {kind} weights not found: {path}; expected {hints[kind]}")
        model.load_backbone(load_state_file(backbone_path), source=str(backbone_path))
        model.load_lins(load_state_file(lin_path), source=str(lin_path))
        return model

    def load_backbone(self, state: Mapping[str, torch.Tensor], source: str = "<state dict>") -> None:
        """Load trunk conv weights from torchvision-style keys (`features.N.weight/bias`)."""
        expected = {f"{i}.{kind}": p for i, layer in enumerate(self.features) if isinstance(layer, nn.Conv2d)
                    for kind, p in (("weight", layer.weight), ("bias", layer.bias))}
        found: dict[str, torch.Tensor] = {}
        unexpected: list[str] = []
        for key, value in state.items():
            m = _TRUNK_KEY.match(key)
            if m is None:
                # torchvision checkpoints also carry the classifier head, which LPIPS does not use.
                if not key.startswith(("classifier.", "scaling_layer.", "lin")):
                    unexpected.append(key)
                continue
            short = f"{m.group(1)}.{m.group(2)}"
            if short in expected:
                found[short] = value
            elif int(m.group(1)) <= self.taps[-1]:
                unexpected.append(key)
        missing = sorted(set(expected) - set(found), key=lambda k: (int(k.split(".")[0]), k))
        if missing or unexpected:
            raise LPIPSWeightsError(
                f"{source}: not a torchvision {self.net} trunk checkpoint; missing keys "
                f"{['features.' + k for k in missing]}, unexpected keys {unexpected[:10]}")
        self._copy(expected, found, source, prefix="features.")

    def load_lins(self, state: Mapping[str, torch.Tensor], source: str = "<state dict>") -> None:
        """Load the 1x1 heads from lpips-package keys (`linK.model.1.weight`)."""
        expected = {f"lin{k}": lin.weight for k, lin in enumerate(self.lins)}
        found: dict[str, torch.Tensor] = {}
        unexpected: list[str] = []
        for key, value in state.items():
            m = _LIN_KEY.match(key)
            if m is not None and f"lin{m.group(1)}" in expected:
                found[f"lin{m.group(1)}"] = value
            elif not key.startswith(("net.", "scaling_layer.")):
                # A full lpips state dict also holds the trunk and scaling buffers: tolerated.
                unexpected.append(key)
        missing = sorted(set(expected) - set(found))
        if missing or unexpected:
            raise LPIPSWeightsError(
                f"{source}: not an lpips v0.1 {self.net} head file; missing keys "
                f"{[k + '.model.1.weight' for k in missing]}, unexpected keys {unexpected[:10]}")
        self._copy(expected, found, source, prefix="")

    @staticmethod
    def _copy(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str,
              prefix: str) -> None:
        bad = [f"{prefix}{k}: file {tuple(found[k].shape)} vs model {tuple(p.shape)}"
               for k, p in expected.items() if tuple(found[k].shape) != tuple(p.shape)]
        if bad:
            raise LPIPSWeightsError(f"{source}: shape mismatch for keys {bad}")
        with torch.no_grad():
            for k, p in expected.items():
                p.copy_(found[k].to(dtype=p.dtype))

    def features_of(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised tap activations of already-scaled inputs."""
        feats = []
        h = x
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self.taps:
                feats.append(h / (h.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS))
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per sample between x and y, both (N, 3, H, W) in [-1, 1]."""
        if x.shape != y.shape or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects two (N, 3, H, W) tensors of equal shape, got "
                             f"{tuple(x.shape)} and {tuple(y.shape)}")
        n = x.shape[0]
        dtype = self.shift.dtype
        # One trunk pass over both inputs halves the number of kernel launches.
        both = (torch.cat([x, y]).to(dtype) - self.shift) / self.scale
        total = x.new_zeros(n, dtype=dtype)
        for f, lin in zip(self.features_of(both), self.lins, strict=True):
            diff = (f[:n] - f[n:]).pow(2)
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total


def _make_layer(spec: tuple) -> nn.Module:
    if spec[0] == "conv":
        _, cin, cout, k, stride, pad = spec
        return nn.Conv2d(cin, cout, k, stride=stride, padding=pad)
    if spec[0] == "relu":
        # Not in-place: the tapped activation must stay intact for autograd.
        return nn.ReLU()
    return nn.MaxPool2d(kernel_size=spec[1], stride=spec[2])

