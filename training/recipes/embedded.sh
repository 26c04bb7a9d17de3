#!/usr/bin/env bash
# The recipe of the embedded default models (iasa_core/weights), on a CPU, from the repository root.
# Every step resumes or skips when its output exists. Times are from one 2-core machine (see the README).
set -euo pipefail
W=${W:-runs/embedded}
export PYTHONPATH=${PYTHONPATH:-.}

# 1. The synthetic world (seed 7) and its training clips: 1000 speakers x 3.4 s at 128x128, one 81-frame clip each,
#    stored losslessly (a lossy mp4 would cap every model near 33 dB). Both steps continue where they stopped.
python -m iasa_core.synthetic --out "$W/world" --videos 1000 --seconds 3.4 --size 128 --fps 25 --seed 7 \
    --engine synthetic
python -m training.prepare --videos "$W/world/videos" --keypoints "$W/world/keypoints" --out "$W/dataset" \
    --size 128 --fps 25 --frames 81 --margin 100 --no-progress

# 2. The VAE (diffusers AutoencoderKLWan, preset cpu-small: 8 base channels, 1.9 M parameters), bf16 on CPUs
#    that have it, residual branches zero-initialised: 5-frame windows of 64x64 crops, every 4th step an
#    81-frame window (48x48) so the causal caches of long videos are trained; held-out check every 500 steps.
#    Then a random DiT (preset cpu-small) around it. Interrupted? Run the same command again: it resumes.
[ -f "$W/vae/vae.safetensors" ] || python -m training.train_vae --data "$W/dataset" --out "$W/vae" --steps 12000 \
    --lr 1e-3 --warmup-steps 100 --min-lr-ratio 0.05 --long-every 4 --long-window-latents 21 --long-crop 48 \
    --long-batch 1 --log-every 50 --save-every 250 --eval-every 500 --eval-clips 2
[ -f "$W/init.safetensors" ] || python -m training.init_model --preset cpu-small --vae "$W/vae/vae.safetensors" \
    --out "$W/init.safetensors"

# 2b. (Optional, not in the shipped models.) The decoder alone, longer: the encoder and so every latent stay
#     bit-identical, so `export_embedded --vae "$W/vae_dec/vae.safetensors"` can put it into all three models.
#     Measured on the 2026-12 run: held-out 24.97 -> 25.09 dB after 3000 of 6000 steps (the encoder's latents,
#     not the decoder, limit the round trip), so the shipped models keep the step-2 VAE:
#   python -m training.train_vae --data "$W/dataset" --out "$W/vae_dec" --init "$W/vae/vae.safetensors" \
#       --decoder-only true --steps 6000 --lr 3e-4 --warmup-steps 100 --min-lr-ratio 0.05 --long-every 4 \
#       --long-window-latents 21 --long-crop 48 --long-batch 1 --log-every 50 --save-every 250 --eval-every 500

# 2c. (Saves half an hour in step 3.) Encode every clip once into the trainers' latent cache; it can run on a
#     core the teacher does not use, beside it (add --shard I/N for several processes).
python -m training.warm_cache --model "$W/init.safetensors" --data "$W/dataset" --cache-dir "$W/encoded" --precision bf16

# 3. The teacher: flow matching in bf16, one third of the steps each dense / global mask / full IASA mask,
#    cosine decay, EMA (training/configs/teacher_embedded.yaml). Resumes from its newest checkpoint.
python -m training.finetune_teacher --config training/configs/teacher_embedded.yaml \
    --set model.spec="$W/init.safetensors" --set data.root="$W/dataset" --set data.cache_dir="$W/encoded" --set run.output_dir="$W/teacher"

# 3b. The teacher's pose encoders widened from 8 to 16 channels (the same outputs), then 1200 more steps with the
#     face points drawn into the pose images (model.pose_face: true; without them nothing tells the model how the
#     mouth moves) and the students' background rule in the IASA third (configs/teacher_embedded_widen.yaml).
[ -f "$W/teacher_wide_init.safetensors" ] || python -m training.widen_pose --model "$W/teacher/teacher.safetensors" \
    --hidden 16 --out "$W/teacher_wide_init.safetensors"
python -m training.finetune_teacher --config training/configs/teacher_embedded_widen.yaml \
    --set model.spec="$W/teacher_wide_init.safetensors" --set data.root="$W/dataset" --set data.cache_dir="$W/encoded" \
    --set run.output_dir="$W/teacher_face"

# 4. Two students from the same teacher, same seed and steps: DMD alone, and DMD + the region loss
#    (we ran the two side by side, OMP_NUM_THREADS=1 each).
python -m training.distill --config training/configs/distill_embedded.yaml \
    --set teacher.spec="$W/teacher_face/teacher.safetensors" --set data.root="$W/dataset" --set data.cache_dir="$W/encoded" \
    --set run.output_dir="$W/student_dmd" --set region.weight=0
python -m training.distill --config training/configs/distill_embedded.yaml \
    --set teacher.spec="$W/teacher_face/teacher.safetensors" --set data.root="$W/dataset" --set data.cache_dir="$W/encoded" \
    --set run.output_dir="$W/student"

# 5. Into the package (float16 storage), then the demo's bundled inputs.
python -m training.recipes.export_embedded --teacher "$W/teacher_face/teacher.safetensors" \
    --dmd "$W/student_dmd/student.safetensors" --student "$W/student/student.safetensors"
python -m training.recipes.make_demo_assets
