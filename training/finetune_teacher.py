"""Paper stage 1: fine-tune the pose-conditioned teacher with IASA attention (flow matching, CFG dropout).

    python -m training.finetune_teacher --config training/configs/teacher_tiny_cpu.yaml [--set run.steps=10]
    torchrun --nproc_per_node 4 -m training.finetune_teacher --config training/configs/teacher_paper.yaml
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import torch

from iasa_core.bench.metrics import mouth_boxes
from iasa_core.model.checkpoint import save_student
from iasa_core.model.pose_wan import drop_condition
from iasa_core.model.sparse_patch import sparse_attention_enabled
from iasa_core.model.system import PoseWanSystem
from iasa_core.pose.layout import REGION_FACE, REGION_HANDS

from .batch import PosedDenoiser, SampleCache, TrainSample, prepare_sample
from .cli import run_trainer
from .config import TeacherConfig, to_dict
from .lora import lora_layers, merge_lora_layers, save_lora
from .model_setup import (
    cast_frozen,
    enable_checkpointing,
    load_system,
    make_optimizer,
    make_trainable,
    open_dataset,
    output_path,
    sparse_settings,
    step_sparse,
)
from .objectives import add_noise, box_masks, flow_matching_loss, latent_region_weights, sample_sigma
from .runtime import (
    MetricLogger,
    Runtime,
    all_mean,
    autocast,
    clip_stream,
    ema_update,
    no_sync,
    resolve_precision,
    resume_run,
    sample_generator,
    sample_index,
    save_checkpoint,
    setup_runtime,
    teardown_runtime,
    trainable_state,
    unwrap,
    wrap_ddp,
)


def region_weights(sample: TrainSample, latent_shape: tuple[int, ...], cfg: TeacherConfig) -> torch.Tensor | None:
    """The flow loss's per-cell weights from the clip's face and hand labels and lip boxes; None when none is
    weighted."""
    flow = cfg.flow
    if flow.face_weight == 0 and flow.hands_weight == 0 and flow.mouth_weight == 0:
        return None
    weights = {REGION_FACE: flow.face_weight, REGION_HANDS: flow.hands_weight}
    masks = []
    if flow.mouth_weight:
        _, h, w = sample.labels.shape
        masks.append((box_masks(mouth_boxes(sample.keypoints.cpu().numpy(), h, w), h, w), flow.mouth_weight))
    return latent_region_weights(sample.labels, latent_shape, weights, masks=masks).to(sample.latents.device)


def teacher_loss(model: torch.nn.Module, sample: TrainSample, gen: torch.Generator, cfg: TeacherConfig,
                 device: torch.device, scale: float = 1.0, backward: bool = True) -> dict[str, float]:
    """One clip's flow-matching loss, back-propagated (times ``scale``) inside the sparse-attention context.

    ``backward=False`` only evaluates it (the same draws from ``gen``), e.g. on a fixed validation batch.

    Backward runs inside the context on purpose: with gradient checkpointing the blocks are recomputed during
    backward, and they must recompute with the same sparse attention they ran forward with.
    """
    draws = torch.rand(3, generator=gen)
    sigma = sample_sigma(draws[0:1], cfg.flow.shift).to(device)
    keep_pose = (draws[1:2] >= cfg.flow.pose_dropout).float().to(device)
    keep_image = (draws[2:3] >= cfg.flow.image_dropout).float().to(device)
    if cfg.flow.uncond_dropout > 0:  # an extra draw only then, so runs without it keep their random streams
        keep = (torch.rand(1, generator=gen) >= cfg.flow.uncond_dropout).float().to(device)
        keep_pose, keep_image = keep_pose * keep, keep_image * keep
    x0 = sample.latents
    noise = torch.randn(x0.shape, generator=gen).to(device)
    x_t = add_noise(x0, noise, sigma)
    timestep = (sigma * 1000.0).to(device)
    condition = drop_condition(sample.condition, keep_image)
    inner = unwrap(model).denoiser
    with sparse_attention_enabled(inner, sample.plan, cfg.sparse.backend), torch.set_grad_enabled(backward):
        with autocast(device, cfg.run.precision):
            pred = model(x_t, timestep, condition, sample.pose_video, sample.ref_pose, keep_pose)
        loss = flow_matching_loss(pred, noise, x0, region_weights(sample, x0.shape, cfg))
        if backward:
            (loss * scale).backward()
    return {"loss": float(loss.detach()), "sigma": float(sigma[0]), "keep_pose": float(keep_pose[0]),
            "keep_image": float(keep_image[0])}


def export_teacher(system: PoseWanSystem, model: torch.nn.Module, cfg: TeacherConfig,
                   sparse: dict[str, Any] | None, ema: dict[str, torch.Tensor] | None = None) -> dict[str, str]:
    """Write the merged teacher (a model file ``generate`` and the nodes load) and, for LoRA runs, the LoRA alone.

    With ``ema`` (trained weights by name) those averaged weights are written instead of the last ones."""
    denoiser = copy.deepcopy(unwrap(model).denoiser).eval().requires_grad_(False)
    if ema:
        params = dict(denoiser.named_parameters())
        with torch.no_grad():
            for name, value in ema.items():
                params[name.removeprefix("denoiser.")].copy_(value)
    out: dict[str, str] = {}
    if lora_layers(denoiser):
        out["lora"] = str(save_lora(denoiser.transformer, output_path(cfg.run.output_dir, cfg.export.lora_path)))
        merge_lora_layers(denoiser)
    schedule = {"kind": "teacher", "steps": cfg.export.steps, "guidance": cfg.export.guidance,
                "shift": cfg.flow.shift, **system.pose_render_settings()}
    merged = PoseWanSystem(system.config, denoiser, system.vae, system.image_encoder, system.prompt_embeds,
                           schedule=schedule, sparse=sparse if sparse is not None else dict(system.sparse),
                           source="fine-tuned teacher")
    out["model"] = str(save_student(merged, output_path(cfg.run.output_dir, cfg.export.path)))
    return out


def train_teacher(cfg: TeacherConfig, rt: Runtime | None = None, dataset: Any = None) -> dict[str, Any]:
    """Run (or resume) the fine-tune; returns the final step, the last losses and the exported files."""
    own_rt = rt is None
    rt = rt or setup_runtime(cfg.run)
    try:
        out_dir = Path(cfg.run.output_dir)
        torch.manual_seed(cfg.run.seed)
        # the dataset first: a damaged shard is reported before minutes of model loading
        dataset = dataset if dataset is not None else open_dataset(cfg.data.root, cfg.data.more_roots)
        system = load_system(cfg.model, rt.device)
        params = make_trainable(system.denoiser, cfg.lora)
        cast_frozen(system.denoiser, cfg.run.frozen_dtype)
        enable_checkpointing(system.denoiser, cfg.run.gradient_checkpointing)
        model = wrap_ddp(PosedDenoiser(system.denoiser), rt)
        opt, sched = make_optimizer(params, cfg.optim, cfg.run.steps, system.denoiser)
        sparse = sparse_settings(system, cfg.sparse)
        ema = {k: v.clone() for k, v in trainable_state(model).items()} if cfg.ema > 0 else {}

        start, tensors = resume_run(out_dir, cfg, ("model", "lora"), {"denoiser": model}, {"opt": opt}, [sched], rt)
        for k in ema:
            if f"ema/{k}" in tensors:
                ema[k].copy_(tensors[f"ema/{k}"])
        logger = MetricLogger(out_dir, rt, cfg.run.tensorboard, cfg.run.steps)
        history: list[float] = []
        encode_bf16 = resolve_precision(cfg.run.precision, rt.device) == "bf16"
        cache = SampleCache(cfg.data.cache, cfg.data.cache_dir or None, system, encode_bf16)
        clips = clip_stream(dataset, start, cfg.run.steps, cfg.run.grad_accum, rt, cfg.run.seed,
                            cfg.data.num_workers)
        for step in range(start, cfg.run.steps):
            totals: dict[str, float] = {}
            for micro in range(cfg.run.grad_accum):
                k = sample_index(step, micro, rt, cfg.run.grad_accum)
                sample = prepare_sample(system, next(clips), sparse=step_sparse(sparse, cfg.sparse, cfg.run.seed, k),
                                        cache=cache, encode_bf16=encode_bf16)
                gen = sample_generator(cfg.run.seed, k)
                with no_sync(model, micro < cfg.run.grad_accum - 1):
                    parts = teacher_loss(model, sample, gen, cfg, rt.device, 1.0 / cfg.run.grad_accum)
                for name, value in parts.items():
                    totals[name] = totals.get(name, 0.0) + value / cfg.run.grad_accum
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            if ema:
                ema_update(ema, model, cfg.ema)
            loss = float(all_mean(torch.tensor(totals["loss"]), rt))
            history.append(loss)
            done = step + 1
            if done % cfg.run.log_every == 0 or done == cfg.run.steps:
                logger.log(done, {"train/loss": loss, "train/grad_norm": float(grad_norm),
                                  "train/lr": sched.get_last_lr()[0], "train/sigma": totals["sigma"]})
            if rt.is_main and (done % cfg.run.save_every == 0 or done == cfg.run.steps):
                parts = {"denoiser": trainable_state(model), **({"ema": ema} if ema else {})}
                save_checkpoint(out_dir, done, parts, {"opt": opt}, {"config": to_dict(cfg)},
                                cfg.run.keep_checkpoints)
        logger.close()
        exported = export_teacher(system, model, cfg, sparse, ema) if rt.is_main else {}
        return {"step": cfg.run.steps, "start": start, "losses": history, "exported": exported}
    finally:
        if own_rt:
            teardown_runtime(rt)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return run_trainer(argv, "python -m training.finetune_teacher", __doc__, TeacherConfig, train_teacher, lambda r: r["exported"])


if __name__ == "__main__":
    sys.exit(main())
