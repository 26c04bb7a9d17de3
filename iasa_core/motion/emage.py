"""EMAGE (audio -> SMPL-X motion): loading the ``H-Liu1997/emage_audio`` checkpoint and inference.

Our own implementation, state-dict compatible with the public checkpoint and checked against
the reference code with identical random weights (``scripts/compare_emage_reference.py``).

Folder layout (the Hugging Face repo's, looked up locally first)::

    <folder>/config.json                      generator config (EmageConfig fields)
    <folder>/model.safetensors | pytorch_model.bin
    <folder>/emage_vq/{face,upper,lower,hands,global}/config.json + weights

Inference follows the released procedure: windows of ``pose_length`` (64) frames advancing
``pose_length - seed_frames`` (60); a window's first ``seed_frames`` (4) frames are known
motion (identity pose, or the caller's seed, for the first window; the previous window's
decoded motion after that); audio is sliced at ``audio_sr // pose_fps`` = 533 samples per
frame (integer, as released: a 30 fps frame is really 533.3 samples, so later windows hear
audio that is up to a frame early). Body parts are decoded from codebook indices, the face from
its latent snapped to the nearest code, all on the whole stitched sequence at the end.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .emage_model import EmageConfig, EmageGenerator, Window, plan_windows, run_windows
from .emage_vq import (
    NUM_JOINTS,
    PART_INPUT_DIMS,
    PART_NAMES,
    VQ_FOLDER,
    VQ_SUBFOLDERS,
    EmageVQConfig,
    MotionCodec,
    vq_config_from_state_dict,
)
from .rotation import axis_angle_to_rot6d

__all__ = [
    "HF_REPO",
    "EmageAudioModel",
    "EmageCheckpointError",
    "EmageConfig",
    "EmageMotion",
    "EmageVQConfig",
    "Window",
    "plan_windows",
    "resample_to_16k",
    "run_windows",
]

HF_REPO = "H-Liu1997/emage_audio"
CONFIG_NAME = "config.json"
SAFETENSORS_NAME = "model.safetensors"
BIN_NAME = "pytorch_model.bin"
# Buffers that are a pure function of the config: loaded when present, rebuilt when absent.
_OPTIONAL_KEYS = frozenset({"position_embeddings.pe"})


class EmageCheckpointError(ValueError):
    """A checkpoint's tensors do not match the network its config describes."""


@dataclass
class EmageMotion:
    """SMPL-X motion: ``poses`` (T, 165) axis-angle for 55 joints, ``expression`` (T, 100), ``trans`` (T, 3)."""

    poses: np.ndarray
    expression: np.ndarray
    trans: np.ndarray
    fps: int = 30

    @property
    def num_frames(self) -> int:
        return int(self.poses.shape[0])

    def save_npz(self, path: str | Path) -> None:
        """Write the SMPL-X/AMASS-style keys ``poses``, ``expressions``, ``trans``, ``mocap_frame_rate``."""
        np.savez(
            path,
            poses=self.poses,
            expressions=self.expression,
            trans=self.trans,
            mocap_frame_rate=np.array(self.fps),
        )


def resample_to_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mono float32 audio at 16 kHz (polyphase resampling; channels, if any, are averaged)."""
    from math import gcd

    from scipy.signal import resample_poly

    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0 if x.shape[0] < x.shape[1] else 1)
    if sample_rate == 16000:
        return np.ascontiguousarray(x, dtype=np.float32)
    g = gcd(int(sample_rate), 16000)
    return resample_poly(x, 16000 // g, int(sample_rate) // g).astype(np.float32)


# --------------------------------------------------------------------------- files


def _missing(path: Path, what: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"EMAGE: missing {what}: {path}. Put the file from the Hugging Face repo {HF_REPO} "
        f"into {path.parent} (or pass allow_download=True to fetch the repo)."
    )


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise _missing(path, "config file")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_state_dict(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Weights from ``model.safetensors`` (preferred) or ``pytorch_model.bin`` (weights_only load)."""
    st, binary = folder / SAFETENSORS_NAME, folder / BIN_NAME
    if st.is_file():
        from safetensors.torch import load_file

        return load_file(str(st), device="cpu"), st
    if binary.is_file():
        state = torch.load(binary, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise EmageCheckpointError(f"{binary} does not hold a state dict (got {type(state).__name__})")
        return state, binary
    raise FileNotFoundError(
        f"EMAGE: missing weights in {folder}: expected {SAFETENSORS_NAME} or {BIN_NAME} "
        f"(from the Hugging Face repo {HF_REPO}); put one of them in {folder}."
    )


def _key_list(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load every tensor of ``module`` from ``state``; any missing, unexpected or mis-shaped key is an error."""
    own = module.state_dict()
    missing = sorted(k for k in own if k not in state and k not in _OPTIONAL_KEYS)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {_key_list(missing)}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {_key_list(unexpected)}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {_key_list(shapes, 6)}")
    if problems:
        raise EmageCheckpointError(
            f"EMAGE checkpoint {source} does not match its config: " + "; ".join(problems)
        )
    full = dict(state)
    for k in _OPTIONAL_KEYS:
        if k in own and k not in full:
            full[k] = own[k]
    module.load_state_dict(full, strict=True)


def _save_folder(folder: Path, config: dict[str, Any], state: dict[str, torch.Tensor], safe: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / CONFIG_NAME, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    stale = folder / (BIN_NAME if safe else SAFETENSORS_NAME)
    if stale.is_file():
        stale.unlink()  # the loader prefers safetensors: never leave an older copy beside the new one
    if safe:
        from safetensors.torch import save_file

        save_file(tensors, str(folder / SAFETENSORS_NAME), metadata={"format": "pt"})
    else:
        torch.save(tensors, folder / BIN_NAME)


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _download(repo_id: str, cache_dir: str | None) -> Path:
    from huggingface_hub import snapshot_download

    patterns = [CONFIG_NAME, SAFETENSORS_NAME, BIN_NAME]
    patterns += [f"{VQ_FOLDER}/*/{name}" for name in (CONFIG_NAME, SAFETENSORS_NAME, BIN_NAME)]
    return Path(snapshot_download(repo_id, allow_patterns=patterns, cache_dir=cache_dir))


def default_vq_configs(cfg: EmageConfig, vae_layer: int = 2) -> dict[str, EmageVQConfig]:
    """Sub-model configs consistent with a generator config (for building fresh models)."""
    out = {}
    for name in VQ_SUBFOLDERS:
        out[name] = EmageVQConfig(
            vae_test_dim=PART_INPUT_DIMS[name],
            vae_length=cfg.vae_codebook_size,
            vae_layer=vae_layer,
            vae_codebook_size=cfg.vae_codebook_size,
            model_type="emage_vaeconv" if name == "global" else "emage_vqvaeconv",
        )
    return out


# --------------------------------------------------------------------------- model


class EmageAudioModel(nn.Module):
    """Generator + the five motion codecs; :meth:`infer` turns 16 kHz speech into SMPL-X motion."""

    def __init__(self, config: EmageConfig, vq_configs: dict[str, EmageVQConfig] | None = None):
        super().__init__()
        config.validate()
        vq_configs = vq_configs or default_vq_configs(config)
        _check_compatible(config, vq_configs)
        self.config = config
        self.generator = EmageGenerator(config)
        self.codec = MotionCodec(vq_configs)
        self.eval()

    # ---- files

    @classmethod
    def from_pretrained(
        cls,
        folder_or_repo: str | Path,
        *,
        allow_download: bool = False,
        cache_dir: str | None = None,
        device: str | torch.device | None = None,
    ) -> EmageAudioModel:
        """Load from a local folder (HF layout); fetch ``folder_or_repo`` from the HF hub only
        when it is not a folder and ``allow_download`` is true."""
        folder = Path(folder_or_repo).expanduser()
        if not folder.is_dir():
            name = str(folder_or_repo)
            if allow_download and _REPO_ID.match(name):
                folder = _download(name, cache_dir)
            else:
                hint = (
                    "pass allow_download=True to fetch it from the Hugging Face hub"
                    if _REPO_ID.match(name)
                    else f"or pass the repo id {HF_REPO!r} with allow_download=True"
                )
                raise FileNotFoundError(
                    f"EMAGE weights folder not found: {folder}. Download the Hugging Face repo {HF_REPO} "
                    f"(config.json, pytorch_model.bin or model.safetensors, and "
                    f"{VQ_FOLDER}/{{{','.join(VQ_SUBFOLDERS)}}}/ with the same files) into that folder, "
                    f"{hint}."
                )
        config = EmageConfig.from_dict(read_config(folder))
        state, state_path = read_state_dict(folder)
        vq_configs, vq_states = {}, {}
        for name in VQ_SUBFOLDERS:
            sub = folder / VQ_FOLDER / name
            if not sub.is_dir():
                raise FileNotFoundError(
                    f"EMAGE: missing sub-model folder {sub} (config.json + weights from "
                    f"{HF_REPO}/{VQ_FOLDER}/{name}); put it there."
                )
            sub_state, sub_path = read_state_dict(sub)
            vq_configs[name] = EmageVQConfig.from_dict(
                read_config(sub), defaults=vq_config_from_state_dict(sub_state)
            )
            vq_states[name] = (sub_state, sub_path)
        model = cls(config, vq_configs)
        load_state_strict(model.generator, state, str(state_path))
        for name, (sub_state, sub_path) in vq_states.items():
            load_state_strict(model.codec.part(name), sub_state, str(sub_path))
        model.eval()
        return model.to(device) if device is not None else model

    def save_pretrained(self, folder: str | Path, *, safe_serialization: bool = True) -> None:
        """Write the HF layout (safetensors, or ``pytorch_model.bin`` when ``safe_serialization=False``)."""
        folder = Path(folder)
        cfg = self.config.to_dict()
        cfg.setdefault("architectures", ["EmageAudioModel"])
        _save_folder(folder, cfg, self.generator.state_dict(), safe_serialization)
        for name in VQ_SUBFOLDERS:
            part = self.codec.part(name)
            _save_folder(
                folder / VQ_FOLDER / name, part.config.to_dict(), part.state_dict(), safe_serialization
            )

    # ---- inference

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _codes(self, out: dict[str, torch.Tensor]) -> dict[str, tuple[str, torch.Tensor]]:
        codes = {}
        for part in PART_NAMES:
            if self.config.part_source(part) == "index":
                codes[part] = ("index", F.log_softmax(out[f"cls_{part}"], dim=-1).argmax(-1))
            else:
                codes[part] = ("latent", out[f"rec_{part}"])
        return codes

    def _seed_rows(self, seed_motion: Any, total: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Known motion for the first window's seed frames (C = motion_dims) and the start translation."""
        cfg = self.config
        n = min(cfg.seed_frames, total)
        rows = axis_angle_to_rot6d(torch.zeros(n, NUM_JOINTS, 3)).reshape(n, -1)
        rows = torch.cat([rows, torch.zeros(n, cfg.motion_dims - rows.shape[1])], dim=1)
        start = torch.zeros(1, 3)
        if seed_motion is None:
            return rows, start
        if isinstance(seed_motion, EmageMotion):
            poses = torch.as_tensor(np.asarray(seed_motion.poses, dtype=np.float32))
            trans = torch.as_tensor(np.asarray(seed_motion.trans, dtype=np.float32))
            given = _pose_rows(poses, trans, cfg)
        else:
            arr = torch.as_tensor(np.asarray(seed_motion, dtype=np.float32))
            if arr.ndim != 2 or arr.shape[1] not in (NUM_JOINTS * 3, cfg.motion_dims):
                raise ValueError(
                    f"seed_motion must be (S, {NUM_JOINTS * 3}) axis-angle poses, (S, {cfg.motion_dims}) "
                    f"6-D motion rows or an EmageMotion; got shape {tuple(arr.shape)}"
                )
            given = arr if arr.shape[1] == cfg.motion_dims else _pose_rows(arr, torch.zeros(len(arr), 3), cfg)
        if len(given) == 0:
            return rows, start
        k = min(n, len(given))
        rows[:k] = given[:k]
        start = given[:1, cfg.pose_dims : cfg.pose_dims + 3].clone()
        return rows, start

    @torch.no_grad()
    def generate(
        self,
        audio_16k: np.ndarray,
        *,
        seed_motion: EmageMotion | np.ndarray | None = None,
        speaker_id: int = 0,
        reference_tail: bool = False,
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """The window loop: stitched per-frame latents ``rec_<part>`` and code logits
        ``cls_<part>`` ((T, codebook) each, part in face/upper/hands/lower) and the (1, 3)
        starting root translation. :meth:`infer` = :meth:`decode` of this."""
        cfg = self.config
        if not 0 <= int(speaker_id) < cfg.speaker_dims:
            raise ValueError(f"speaker_id must be in [0, {cfg.speaker_dims}), got {speaker_id}")
        wave_np = np.asarray(audio_16k, dtype=np.float32).squeeze()
        if wave_np.ndim != 1:
            raise ValueError(f"expected mono audio (samples,), got shape {np.shape(audio_16k)}")
        total = wave_np.shape[0] * cfg.pose_fps // cfg.audio_sr
        if total < 1:
            raise ValueError(f"audio too short: {wave_np.shape[0]} samples make no {cfg.pose_fps} fps frame")
        if self.training:
            self.eval()
        device = self.device
        wave = torch.from_numpy(np.array(wave_np, dtype=np.float32, copy=True))[None].to(device)
        speaker = torch.tensor([int(speaker_id)], device=device)
        first_seed, start = self._seed_rows(seed_motion, total)
        spf = cfg.samples_per_frame

        def step(win: Window, seed_rows: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
            n, k = win.end - win.start, len(seed_rows)
            motion = torch.zeros(n, cfg.motion_dims, device=device)
            motion[:k] = seed_rows
            known = torch.zeros(n, dtype=torch.bool, device=device)
            known[:k] = True
            audio = wave[:, win.start * spf : (win.start + n) * spf]
            out = self.generator(audio, speaker, motion[None], known[None])
            decoded = self.codec.decode(self._codes(out))["motion"]
            return {key: value[0] for key, value in out.items()}, decoded[0]

        stitched = run_windows(
            total,
            first_seed.to(device),
            step,
            window=cfg.pose_length,
            seed=cfg.seed_frames,
            reference_tail=reference_tail,
        )
        return stitched, start.to(device)

    @torch.no_grad()
    def decode(self, stitched: dict[str, torch.Tensor], start: torch.Tensor | None = None) -> EmageMotion:
        """Per-frame latents/logits (as from :meth:`generate`) -> SMPL-X motion, decoded over the whole sequence."""
        decoded = self.codec.decode(self._codes({k: v[None] for k, v in stitched.items()}))
        if start is None:
            start = torch.zeros(1, 3, device=decoded["lower_mix"].device)
        trans = self.codec.root_translation(decoded["lower_mix"], start, self.config.pose_fps)
        return EmageMotion(
            poses=decoded["poses"][0].cpu().numpy(),
            expression=decoded["expression"][0].cpu().numpy(),
            trans=trans[0].cpu().numpy(),
            fps=int(self.config.pose_fps),
        )

    def infer(
        self,
        audio_16k: np.ndarray,
        *,
        seed_motion: EmageMotion | np.ndarray | None = None,
        speaker_id: int = 0,
        reference_tail: bool = False,
    ) -> EmageMotion:
        """Mono 16 kHz float audio -> motion of ``len(audio) * 30 // 16000`` frames at 30 fps.

        ``seed_motion``: optional starting pose (its first ``seed_frames`` frames seed the
        first window; root translation starts at its first frame); default the identity pose
        at the origin. ``reference_tail=True`` drops the last 4..8 frames in the cases where
        the released code does (see :func:`plan_windows`). Deterministic (eval mode, no sampling).
        """
        stitched, start = self.generate(
            audio_16k, seed_motion=seed_motion, speaker_id=speaker_id, reference_tail=reference_tail
        )
        return self.decode(stitched, start)


def _pose_rows(poses: torch.Tensor, trans: torch.Tensor, cfg: EmageConfig) -> torch.Tensor:
    if poses.ndim != 2 or poses.shape[1] != NUM_JOINTS * 3:
        raise ValueError(f"poses must be (S, {NUM_JOINTS * 3}) axis-angle, got {tuple(poses.shape)}")
    if trans.shape != (poses.shape[0], 3):
        raise ValueError(f"trans must be (S, 3) matching poses, got {tuple(trans.shape)}")
    s = poses.shape[0]
    rot = axis_angle_to_rot6d(poses.reshape(s, NUM_JOINTS, 3)).reshape(s, -1)
    return torch.cat([rot, trans, torch.zeros(s, cfg.motion_dims - rot.shape[1] - 3)], dim=1)


def _check_compatible(cfg: EmageConfig, vq: dict[str, EmageVQConfig]) -> None:
    missing = [name for name in VQ_SUBFOLDERS if name not in vq]
    if missing:
        raise ValueError(f"EMAGE: sub-model configs missing for {missing}")
    for part in PART_NAMES:
        source = cfg.part_source(part)
        if source is None:
            raise ValueError(
                f"EMAGE config predicts nothing for the {part} (l/c weights both 0): unsupported"
            )
        sub = vq[part]
        if sub.vae_test_dim != PART_INPUT_DIMS[part]:
            raise ValueError(
                f"EMAGE {part} codec has vae_test_dim {sub.vae_test_dim}, expected {PART_INPUT_DIMS[part]}"
            )
        if source == "latent" and sub.vae_length != cfg.vae_codebook_size:
            raise ValueError(
                f"EMAGE {part} is decoded from its latent ({cfg.vae_codebook_size}-d) but its codec's "
                f"vae_length is {sub.vae_length}"
            )
        if source == "index" and sub.vae_codebook_size < cfg.vae_codebook_size:
            raise ValueError(
                f"EMAGE {part} codebook has {sub.vae_codebook_size} codes, the generator predicts {cfg.vae_codebook_size}"
            )
    g = vq["global"]
    if g.vae_test_dim != PART_INPUT_DIMS["global"]:
        raise ValueError(
            f"EMAGE global codec has vae_test_dim {g.vae_test_dim}, expected {PART_INPUT_DIMS['global']}"
        )
