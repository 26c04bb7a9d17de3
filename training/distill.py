"""Paper stage 2: distil the teacher into a few-step IASA student with DMD plus the input-aware region loss.

    python -m training.distill --config training/configs/distill_tiny_cpu.yaml [--set run.steps=10]
    torchrun --nproc_per_node 8 -m training.distill --config training/configs/distill_paper.yaml

Real score: the frozen teacher with CFG. Fake score: a trainable copy (the critic) fitted every step with the
flow-matching loss on student samples. Generator: the student (initialised from the teacher), sampled with its
few-step schedule by backward simulation (Self-Forcing: run the schedule, stop at a random step, keep the graph
of that step only), updated every ``dmd.generator_every`` steps with L_DMD + lambda_region * L_region; an EMA of
its weights is what gets exported.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from pathlib import Path
from typing import Any

import torch

from iasa_core.model.checkpoint import save_student
from iasa_core.model.pose_wan import drop_condition
from iasa_core.model.sparse_patch import sparse_attention_enabled
from iasa_core.model.system import PoseWanSystem
from iasa_core.sampling.samplers import cfg_combine
from iasa_core.sampling.schedules import student_sigmas

from .batch import PosedDenoiser, SampleCache, TrainSample, prepare_sample
from .cli import run_trainer
from .config import DistillConfig, RegionConfig, to_dict
from .lora import merge_lora_layers
from .model_setup import (
    cast_frozen,
    enable_checkpointing,
    frozen_copy,
    load_teacher,
    make_optimizer,
    make_trainable,
    open_dataset,
    output_path,
    shared_copy,
    sparse_settings,
)
from .objectives import add_noise, dmd_loss, flow_matching_loss, sample_sigma, x0_from_flow
from .runtime import (
    MetricLogger,
    Runtime,
    all_mean,
    autocast,
    clip_stream,
    ema_update,
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


def _timestep(sigma: torch.Tensor | float, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), float(sigma) * 1000.0, device=device)


def predict(model: torch.nn.Module, x: torch.Tensor, sigma: float, sample: TrainSample, cfg: DistillConfig,
            device: torch.device) -> torch.Tensor:
    """Flow prediction of a posed denoiser for one clip (conditional)."""
    with autocast(device, cfg.run.precision):
        return model(x, _timestep(sigma, x.shape[0], device), sample.condition, sample.pose_video,
                     sample.ref_pose).float()


def predict_cfg(model: torch.nn.Module, x: torch.Tensor, sigma: float, sample: TrainSample, guidance: float,
                cfg: DistillConfig, device: torch.device) -> torch.Tensor:
    """Teacher flow with classifier-free guidance (image and pose dropped in the unconditional half)."""
    if guidance == 1.0:
        return predict(model, x, sigma, sample, cfg, device)
    keep = torch.tensor([1.0, 0.0], device=device)
    cond = drop_condition(sample.condition, keep)
    with autocast(device, cfg.run.precision):
        v = model(x.expand(2, -1, -1, -1, -1), _timestep(sigma, 2, device), cond, sample.pose_video,
                  sample.ref_pose, keep).float()
    return cfg_combine(v[:1], v[1:], guidance)


def student_rollout(generator: torch.nn.Module, sample: TrainSample, sigmas: torch.Tensor, exit_step: int,
                    gen: torch.Generator, cfg: DistillConfig, device: torch.device, grad: bool) -> torch.Tensor:
    """Few-step sampling from noise that stops at ``exit_step``; only that step keeps its graph (if ``grad``)."""
    shape = sample.latents.shape
    x = torch.randn(shape, generator=gen).to(device)
    for i in range(exit_step + 1):
        s = float(sigmas[i])
        with torch.set_grad_enabled(grad and i == exit_step):
            x0 = x0_from_flow(x, predict(generator, x, s, sample, cfg, device), s)
        if i == exit_step:
            return x0
        s_next = float(sigmas[i + 1])
        x = add_noise(x0.detach(), torch.randn(shape, generator=gen).to(device), s_next)
    raise AssertionError("unreachable")


def pick_frames(num_frames: int, count: int, gen: torch.Generator) -> torch.Tensor:
    """``count`` distinct frame indices (all frames when the clip is shorter), sorted."""
    if count <= 0 or count >= num_frames:
        return torch.arange(num_frames)
    return torch.randperm(num_frames, generator=gen)[:count].sort().values


def build_region_loss(cfg: RegionConfig, device: torch.device) -> torch.nn.Module | None:
    """The region loss from its config (LPIPS weights and ArcFace model from local files), or None if off."""
    if cfg.weight <= 0:
        return None
    from .losses.region import build_region_loss as build

    return build(cfg).eval().requires_grad_(False).to(device)


def region_term(system: PoseWanSystem, region_loss: torch.nn.Module, x0: torch.Tensor, sample: TrainSample,
                frames: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """Decode the student's latents (gradient through the frozen VAE decoder) and compare chosen frames."""
    video = system.decode_tensor(x0)  # (1, 3, T, H, W) in [-1, 1]
    idx = frames.to(video.device)
    x = video[0].index_select(1, idx).permute(1, 0, 2, 3).float()
    target = sample.frames[0].index_select(1, idx).permute(1, 0, 2, 3).float()
    labels = sample.labels.index_select(0, frames).to(video.device)
    keypoints = sample.keypoints.index_select(0, frames).to(video.device)
    total, parts = region_loss(x, target, labels, keypoints)
    return total, {f"region/{k}": float(v.detach()) for k, v in parts.items()}


def generator_loss(system: PoseWanSystem, generator: torch.nn.Module, teacher: torch.nn.Module,
                   critic: torch.nn.Module, sample: TrainSample, region_loss: torch.nn.Module | None,
                   sigmas: torch.Tensor, gen: torch.Generator, cfg: DistillConfig, device: torch.device
                   ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """L_DMD + lambda_region * L_region on one clip; returns the loss, the generated latents and the parts."""
    exit_step = int(torch.randint(len(sigmas), (1,), generator=gen))
    x0 = student_rollout(generator, sample, sigmas, exit_step, gen, cfg, device, grad=True)
    sigma = float(sample_sigma(torch.rand(1, generator=gen), cfg.dmd.shift, cfg.dmd.t_min, cfg.dmd.t_max))
    x_t = add_noise(x0.detach(), torch.randn(x0.shape, generator=gen).to(device), sigma)
    with torch.no_grad():
        pred_real = x0_from_flow(x_t, predict_cfg(teacher, x_t, sigma, sample, cfg.dmd.guidance, cfg, device),
                                 sigma)
        pred_fake = x0_from_flow(x_t, predict(critic, x_t, sigma, sample, cfg, device), sigma)
    l_dmd = dmd_loss(x0, pred_real, pred_fake)
    parts = {"gen/dmd": float(l_dmd.detach()), "gen/exit_step": float(exit_step), "gen/sigma": sigma}
    loss = l_dmd
    if region_loss is not None:
        frames = pick_frames(sample.frames.shape[2], cfg.region.frames, gen)
        l_region, region_parts = region_term(system, region_loss, x0, sample, frames)
        loss = loss + cfg.region.weight * l_region
        parts["gen/region"] = float(l_region.detach())
        parts.update(region_parts)
    return loss, x0.detach(), parts


def critic_loss(critic: torch.nn.Module, sample: TrainSample, x0_gen: torch.Tensor, gen: torch.Generator,
                cfg: DistillConfig, device: torch.device) -> torch.Tensor:
    """The fake score's denoising (flow-matching) loss on a student sample."""
    sigma = float(sample_sigma(torch.rand(1, generator=gen), cfg.dmd.shift, cfg.dmd.t_min, cfg.dmd.t_max))
    noise = torch.randn(x0_gen.shape, generator=gen).to(device)
    x_t = add_noise(x0_gen, noise, sigma)
    return flow_matching_loss(predict(critic, x_t, sigma, sample, cfg, device), noise, x0_gen)


def export_student(system: PoseWanSystem, generator: torch.nn.Module, ema: dict[str, torch.Tensor],
                   cfg: DistillConfig, sparse: dict[str, Any] | None) -> str:
    """Write the EMA student, adapters merged, with its few-step schedule: a file ``generate`` and the nodes load."""
    denoiser = copy.deepcopy(unwrap(generator).denoiser).eval()
    params = dict(denoiser.named_parameters())
    with torch.no_grad():
        for name, value in ema.items():
            params[name.removeprefix("denoiser.")].copy_(value)
    denoiser.requires_grad_(False)
    merge_lora_layers(denoiser)
    schedule = {"kind": "student", "timesteps": list(cfg.dmd.timesteps), "shift": cfg.dmd.shift,
                **system.pose_render_settings()}
    student = PoseWanSystem(system.config, denoiser, system.vae, system.image_encoder, system.prompt_embeds,
                            schedule=schedule, sparse=sparse if sparse is not None else dict(system.sparse),
                            source="distilled student")
    return str(save_student(student, output_path(cfg.run.output_dir, cfg.export.path)))


def train_student(cfg: DistillConfig, rt: Runtime | None = None, dataset: Any = None) -> dict[str, Any]:
    """Run (or resume) the distillation; returns the final step, loss histories and the exported file."""
    own_rt = rt is None
    rt = rt or setup_runtime(cfg.run)
    try:
        out_dir = Path(cfg.run.output_dir)
        torch.manual_seed(cfg.run.seed)
        # the dataset first: a damaged shard is reported before minutes of model loading
        dataset = dataset if dataset is not None else open_dataset(cfg.data.root, cfg.data.more_roots)
        system = load_teacher(cfg.teacher, rt.device)
        sparse = sparse_settings(system, cfg.sparse)
        share = cfg.lora.rank > 0  # LoRA: one frozen base under teacher, critic and student
        teacher = PosedDenoiser(frozen_copy(system.denoiser, share))
        critic_denoiser = shared_copy(system.denoiser, share)
        gen_params = make_trainable(system.denoiser, cfg.lora)  # the student starts as the teacher
        critic_params = make_trainable(critic_denoiser, cfg.lora)
        for d in (system.denoiser, critic_denoiser, teacher.denoiser):
            cast_frozen(d, cfg.run.frozen_dtype)
        for d in (system.denoiser, critic_denoiser):
            enable_checkpointing(d, cfg.run.gradient_checkpointing)
        generator = wrap_ddp(PosedDenoiser(system.denoiser), rt)
        critic = wrap_ddp(PosedDenoiser(critic_denoiser), rt)
        opt_g, sched_g = make_optimizer(gen_params, cfg.dmd.generator_optim, cfg.run.steps, system.denoiser)
        opt_c, sched_c = make_optimizer(critic_params, cfg.dmd.critic_optim, cfg.run.steps, critic_denoiser)
        ema = {k: v.clone() for k, v in trainable_state(generator).items()}
        region_loss = build_region_loss(cfg.region, rt.device)
        sigmas = student_sigmas(cfg.dmd.timesteps, cfg.dmd.shift)

        start, tensors = resume_run(out_dir, cfg, ("teacher", "lora"), {"generator": generator, "critic": critic},
                                    {"generator": opt_g, "critic": opt_c}, [sched_g, sched_c], rt)
        if tensors:
            for k in ema:
                ema[k].copy_(tensors[f"ema/{k}"])
        logger = MetricLogger(out_dir, rt, cfg.run.tensorboard, cfg.run.steps)
        history: dict[str, list[float]] = {"critic": [], "generator": []}
        models = {"generator": unwrap(generator).denoiser, "critic": unwrap(critic).denoiser,
                  "teacher": teacher.denoiser}
        encode_bf16 = resolve_precision(cfg.run.precision, rt.device) == "bf16"
        cache = SampleCache(cfg.data.cache, cfg.data.cache_dir or None, system, encode_bf16)
        clips = clip_stream(dataset, start, cfg.run.steps, 1, rt, cfg.run.seed, cfg.data.num_workers)
        last_gen: dict[str, float] = {}
        for step in range(start, cfg.run.steps):
            k = sample_index(step, 0, rt, 1)
            sample = prepare_sample(system, next(clips), sparse=sparse, cache=cache, encode_bf16=encode_bf16)
            gen = sample_generator(cfg.run.seed, k)
            scalars: dict[str, float] = {}
            # Backward runs inside the sparse contexts so checkpointed blocks recompute with the same attention.
            with contextlib.ExitStack() as stack:
                for m in models.values():
                    stack.enter_context(sparse_attention_enabled(m, sample.plan, cfg.sparse.backend))
                x0_gen = None
                if step % cfg.dmd.generator_every == 0:
                    loss_g, x0_gen, parts = generator_loss(system, generator, teacher, critic, sample, region_loss,
                                                           sigmas, gen, cfg, rt.device)
                    loss_g.backward()
                    norm_g = torch.nn.utils.clip_grad_norm_(gen_params, cfg.dmd.generator_optim.grad_clip)
                    opt_g.step()
                    opt_g.zero_grad(set_to_none=True)
                    ema_update(ema, generator, cfg.dmd.ema)
                    history["generator"].append(float(loss_g.detach()))
                    last_gen = dict(parts, **{"gen/loss": float(all_mean(loss_g.detach(), rt)),
                                              "gen/grad_norm": float(norm_g), "gen/step": float(step + 1)})
                    scalars.update(last_gen)
                sched_g.step()
                if x0_gen is None:
                    with torch.no_grad():
                        exit_step = int(torch.randint(len(sigmas), (1,), generator=gen))
                        x0_gen = student_rollout(generator, sample, sigmas, exit_step, gen, cfg, rt.device,
                                                 grad=False)
                loss_c = critic_loss(critic, sample, x0_gen, gen, cfg, rt.device)
                loss_c.backward()
            norm_c = torch.nn.utils.clip_grad_norm_(critic_params, cfg.dmd.critic_optim.grad_clip)
            opt_c.step()
            sched_c.step()
            opt_c.zero_grad(set_to_none=True)
            history["critic"].append(float(loss_c.detach()))
            scalars["critic/loss"] = float(all_mean(loss_c.detach(), rt))
            scalars["critic/grad_norm"] = float(norm_c)
            done = step + 1
            if done % cfg.run.log_every == 0 or done == cfg.run.steps:
                # The generator's numbers from its latest update (it steps every generator_every steps).
                logger.log(done, {**last_gen, **scalars})
            if rt.is_main and (done % cfg.run.save_every == 0 or done == cfg.run.steps):
                save_checkpoint(out_dir, done, {"generator": trainable_state(generator),
                                                "critic": trainable_state(critic), "ema": ema},
                                {"generator": opt_g, "critic": opt_c}, {"config": to_dict(cfg)},
                                cfg.run.keep_checkpoints)
        logger.close()
        exported = export_student(system, generator, ema, cfg, sparse) if rt.is_main else None
        return {"step": cfg.run.steps, "start": start, "history": history, "exported": exported}
    finally:
        if own_rt:
            teardown_runtime(rt)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    return run_trainer(argv, "python -m training.distill", __doc__, DistillConfig, train_student, lambda r: {"student": r["exported"]} if r["exported"] else None)


if __name__ == "__main__":
    sys.exit(main())
