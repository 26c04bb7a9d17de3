"""Training configs: nested dataclasses read from YAML, with command-line ``--set a.b=value`` overrides."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


@dataclass
class ModelSpec:
    """What ``iasa_core.model.loading.load_model`` takes: a preset, a student/teacher file, Wan files or a folder."""

    spec: str = "tiny"
    pose_weights: str | None = None
    vae: str | None = None
    image_encoder: str | None = None
    prompt_embeds: str | None = None  # safetensors file with a ``prompt_embeds`` tensor (tokens, text_dim)
    loras: list[list[Any]] = field(default_factory=list)  # [[path, strength], ...] merged before training
    search_dirs: list[str] = field(default_factory=list)
    allow_download: bool = False
    seed: int = 0
    # Draw the face landmarks into the pose images (the mouth's shape reaches the model only this way); None:
    # as the model file says. Stored in the exported model, so inference draws them too.
    pose_face: bool | None = None
    # Draw the mouth's opening as a patch of graded brightness (``RenderStyle.mouth``); None: as the model says.
    pose_mouth: bool | None = None


@dataclass
class DataConfig:
    """A dataset written by ``python -m training.prepare``."""

    root: str = ""
    ref_frame: str = "first"  # "first": the clip's first frame is the reference image, as at inference
    num_workers: int = 0
    cache: bool = True  # keep each clip's VAE latents, I2V condition, pose images and plan after first use
    cache_dir: str = ""  # also keep latents + condition on disk here (per VAE), for resumed and later runs
    more_roots: list[str] = field(default_factory=list)  # further prepared datasets whose clips join root's


@dataclass
class LoraConfig:
    """LoRA on the Wan blocks; rank 0 trains every denoiser weight instead (for small models trained from scratch)."""

    rank: int = 128
    alpha: float | None = None  # default: equal to the rank (scale 1)
    targets: list[str] = field(default_factory=lambda: ["q", "k", "v", "o", "ffn.0", "ffn.2"])
    train_pose_encoder: bool = True


@dataclass
class OptimConfig:
    """AdamW with a linear warm-up, then a constant rate or a cosine decay over the run."""

    lr: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_steps: int = 0
    decay: str = "none"         # none | cosine (to lr * min_lr_ratio at run.steps)
    min_lr_ratio: float = 0.1
    pose_lr_scale: float = 1.0  # the pose encoders' and per-block pose maps' learning rate is lr times this

    def __post_init__(self) -> None:
        if self.decay not in ("none", "cosine"):
            raise ConfigError(f"optim.decay must be 'none' or 'cosine'; got {self.decay!r}")
        if not self.pose_lr_scale > 0:
            raise ConfigError(f"optim.pose_lr_scale must be > 0; got {self.pose_lr_scale!r}")


@dataclass
class SparseConfig:
    """IASA attention during training (the model's stored settings, with these overrides)."""

    enabled: bool = True
    backend: str = "gather"  # exact and differentiable; FlashInfer has no backward pass
    settings: dict[str, Any] = field(default_factory=dict)  # build_plan options, e.g. {top_k: 2, block_size: 128}
    # Teacher fine-tune only: shares of steps run with dense attention and with the global mask alone (no
    # same-region rule), so one teacher serves every row of the ablation; the rest use the full IASA mask.
    dense_fraction: float = 0.0
    global_fraction: float = 0.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.dense_fraction and 0.0 <= self.global_fraction
                and self.dense_fraction + self.global_fraction <= 1.0):
            raise ConfigError("sparse.dense_fraction and sparse.global_fraction must be >= 0 with a sum <= 1; got "
                              f"{self.dense_fraction} and {self.global_fraction}")


@dataclass
class RunConfig:
    """Where and how long to run, precision, memory savers, logging and checkpoints."""

    output_dir: str = "runs/train"
    steps: int = 1000
    grad_accum: int = 1
    seed: int = 0
    device: str = "auto"  # auto: cuda:<local rank> when CUDA is there, else cpu
    precision: str = "fp32"  # fp32 | bf16 (autocast; master weights stay fp32) | auto (bf16 where it is native)
    frozen_dtype: str = "fp32"  # fp32 | bf16: storage of the weights that do not train (needs precision bf16)
    gradient_checkpointing: bool = False
    log_every: int = 10
    save_every: int = 100
    keep_checkpoints: int = 3
    tensorboard: bool = True

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ConfigError(f"run.precision must be 'fp32', 'bf16' or 'auto'; got {self.precision!r}")
        if self.frozen_dtype not in ("fp32", "bf16"):
            raise ConfigError(f"run.frozen_dtype must be 'fp32' or 'bf16'; got {self.frozen_dtype!r}")
        if self.frozen_dtype == "bf16" and self.precision != "bf16":
            raise ConfigError("run.frozen_dtype bf16 needs run.precision bf16 (autocast mixes the two dtypes)")
        if self.steps < 1 or self.grad_accum < 1 or self.log_every < 1 or self.save_every < 1:
            raise ConfigError("run.steps, run.grad_accum, run.log_every and run.save_every must be at least 1")


@dataclass
class TeacherExport:
    """The fine-tuned teacher as a model file that ``generate`` and the nodes load."""

    path: str = "teacher.safetensors"  # relative paths are inside run.output_dir
    steps: int = 30
    guidance: float = 5.0
    lora_path: str = "teacher_lora.safetensors"  # the LoRA alone, community Wan format (LoRA runs only)


@dataclass
class FlowConfig:
    """Flow-matching objective of the teacher fine-tune, with condition dropout for CFG."""

    shift: float = 5.0
    pose_dropout: float = 0.05   # UniAnimate's rates
    image_dropout: float = 0.1
    # Both dropped at once: CFG's unconditional input. Independent draws above give it only
    # pose_dropout * image_dropout of the samples (0.5 %), too few to learn it on a small budget.
    uncond_dropout: float = 0.0
    # Extra loss weight on latent cells covering the face and the hands (the clip's region labels): a cell
    # counts 1 + weight x (its share of face or hand pixels). The face is ~5 % of a frame at 128x128, so a plain
    # mean lets the model neglect the mouth (0: the plain Wan objective).
    face_weight: float = 0.0
    hands_weight: float = 0.0
    # The same for the cells over the lips (the box ``bench quality``'s lip-sync proxy reads, from the keypoints):
    # the mouth is ~0.3 % of a frame, too little for a plain or face-weighted mean to teach it to move.
    mouth_weight: float = 0.0

    def __post_init__(self) -> None:
        if min(self.face_weight, self.hands_weight, self.mouth_weight) < 0:
            raise ConfigError(f"flow.face_weight, flow.hands_weight and flow.mouth_weight must be >= 0; got "
                              f"{self.face_weight!r}, {self.hands_weight!r}, {self.mouth_weight!r}")


@dataclass
class TeacherConfig:
    """``python -m training.finetune_teacher``."""

    model: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    run: RunConfig = field(default_factory=RunConfig)
    export: TeacherExport = field(default_factory=TeacherExport)
    ema: float = 0.0  # decay of an exponential moving average of the weights, exported instead of the last ones


@dataclass
class DMDConfig:
    """Distribution matching distillation (CausVid / Self-Forcing recipe, DESIGN section 6)."""

    guidance: float = 4.0             # CFG of the real score (the frozen teacher)
    t_min: float = 0.02               # noise levels for the scores, uniform before the shift
    t_max: float = 0.98
    shift: float = 5.0
    timesteps: list[float] = field(default_factory=lambda: [1000, 750, 500, 250])  # the student's schedule
    generator_every: int = 5          # critic updated every step, generator every N
    ema: float = 0.99
    generator_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-6, betas=[0.0, 0.999],
                                                                           grad_clip=10.0))
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-7, betas=[0.0, 0.999],
                                                                        grad_clip=10.0))


@dataclass
class RegionConfig:
    """Input-aware region loss (paper eq. 5) on decoded student frames against the ground truth."""

    weight: float = 0.25              # lambda_region; 0 turns the loss off (the "DMD only" ablation row)
    face: float = 1.0
    hands: float = 1.0
    arms: float = 0.5
    body: float = 0.5
    frames: int = 4                   # frames per clip the loss looks at (decoded frames are costly to compare)
    lpips_net: str = "alex"
    lpips_backbone: str | None = None  # torchvision alexnet/vgg16 checkpoint; None: random features (tests only)
    lpips_lin: str | None = None       # lpips' weights/v0.1/<net>.pth
    arcface: str | None = None         # insightface recognition ONNX (e.g. w600k_r50.onnx); None: LPIPS on the face


@dataclass
class StudentExport:
    """The distilled student file."""

    path: str = "student.safetensors"


@dataclass
class DistillConfig:
    """``python -m training.distill``."""

    teacher: ModelSpec = field(default_factory=ModelSpec)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    dmd: DMDConfig = field(default_factory=DMDConfig)
    region: RegionConfig = field(default_factory=RegionConfig)
    run: RunConfig = field(default_factory=RunConfig)
    export: StudentExport = field(default_factory=StudentExport)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def from_dict(cls: type, data: dict[str, Any] | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from nested dicts; unknown keys are errors so typos do not pass silently."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    kwargs = {}
    for key, value in data.items():
        tp = hints[key]
        path = f"{where}.{key}" if where else key
        if _is_dataclass_type(tp):
            kwargs[key] = from_dict(tp, value, path)
        else:
            kwargs[key] = _check_scalar(value, tp, path)
    return cls(**kwargs)


def _check_scalar(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
        origin = typing.get_origin(tp)
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    base = origin or tp
    if base is Any or isinstance(value, base):
        if base is int and isinstance(value, bool):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    raise ConfigError(f"{path}: expected {getattr(base, '__name__', base)}, got {value!r}")


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings (values parsed as YAML) to a nested dict."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value (e.g. run.steps=10)")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def load_config(cls: type, path: str | None, overrides: list[str] = ()) -> Any:
    """Read a YAML config into ``cls``, with overrides; relative data/output paths stay relative to the cwd."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; see training/configs/ for examples")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {p} is not valid YAML: {exc}") from exc
    return from_dict(cls, apply_overrides(data, list(overrides)))


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for logs and checkpoints)."""
    return dataclasses.asdict(config)
