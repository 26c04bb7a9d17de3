"""Model stage: the pose-conditioned Wan2.1 student (or teacher) as an IASA_MODEL."""

from __future__ import annotations

from . import comfy_bridge as bridge

# The embedded trained models (shipped with the pack) and named configurations with random weights.
EMBEDDED_CHOICES = ("embedded", "embedded-dmd", "embedded-teacher")
PRESET_CHOICES = EMBEDDED_CHOICES + ("tiny", "wan2.1-1.3b", "wan2.1-i2v-14b")
MODEL_FOLDERS = ("iasa", "diffusion_models")


class IASAModelLoader:
    """Loads stage 2: a preset, an IASA student checkpoint or a Wan2.1 file, with LoRAs merged."""

    @classmethod
    def INPUT_TYPES(cls):
        files = sorted(set(bridge.list_models("iasa")) | set(bridge.list_models("diffusion_models")))
        loras = ["none"] + bridge.list_models("loras")
        return {
            "required": {
                "model": (list(PRESET_CHOICES) + files, {
                    "default": "embedded",
                    "tooltip": "embedded: the small trained 4-step IASA student shipped with the pack (128x128 "
                               "cartoon speakers, runs on CPU; embedded-dmd / embedded-teacher are its ablation "
                               "models). Or an IASA student .safetensors (models/iasa), a Wan2.1 I2V file "
                               "(models/iasa or models/diffusion_models; needs pose_weights and vae), or a preset "
                               "with RANDOM weights: tiny, wan2.1-1.3b, wan2.1-i2v-14b (tests, speed checks)."}),
                "dtype": (["auto", "float32", "bfloat16", "float16"], {
                    "default": "auto",
                    "tooltip": "Weight precision; auto = bfloat16 on CUDA and on CPUs with native bf16 (AMX / AVX512-BF16), else float32."}),
                "device": (["auto", "cpu", "cuda"], {
                    "default": "auto",
                    "tooltip": "Where the model runs; auto = ComfyUI's device."}),
            },
            "optional": {
                "lora_1": (loras, {"default": "none", "tooltip": "A LoRA from models/loras to merge (Wan community "
                                                                 "or diffusers format); none = no LoRA."}),
                "lora_1_strength": ("FLOAT", {
                    "default": 1.0, "min": -4.0, "max": 4.0, "step": 0.01,
                    "tooltip": "Strength of lora_1 (0 = not merged)."}),
                "lora_2": (loras, {"default": "none", "tooltip": "A second LoRA from models/loras; none = no LoRA."}),
                "lora_2_strength": ("FLOAT", {
                    "default": 1.0, "min": -4.0, "max": 4.0, "step": 0.01,
                    "tooltip": "Strength of lora_2 (0 = not merged)."}),
                "pose_weights": (["none"] + bridge.list_models("iasa"), {
                    "default": "none",
                    "tooltip": "UniAnimate-DiT checkpoint with the pose encoders (models/iasa); needed for plain "
                               "Wan2.1 files, not for IASA students or presets."}),
                "vae": (["none"] + bridge.list_models("vae"), {
                    "default": "none",
                    "tooltip": "Wan2.1 VAE (models/vae, e.g. wan_2.1_vae.safetensors); needed for plain Wan2.1 "
                               "files."}),
                "seed": ("INT", {
                    # The frontend adds a "randomize" control to any INT named seed; weights must stay put.
                    "default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": False,
                    "tooltip": "Seed of the random weights of a preset (ignored for files)."}),
            },
        }

    RETURN_TYPES = ("IASA_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded stage-2 model with its device, dtype and default sampling settings.",)
    FUNCTION = "load"
    CATEGORY = "IASA/model"
    DESCRIPTION = ("Loads IASA's pose-conditioned Wan2.1 image-to-video model. 'embedded' is a small trained "
                   "student shipped with the pack (no download). Presets (tiny, wan2.1-1.3b, "
                   "wan2.1-i2v-14b) have RANDOM weights: the video is noise shaped by the poses, which shows the "
                   "path works (tiny runs on CPU); use a trained IASA student file for real videos. Nothing is "
                   "downloaded; files are looked for in ComfyUI's model folders.")

    def load(self, model, dtype="auto", device="auto", lora_1="none", lora_1_strength=1.0, lora_2="none",
             lora_2_strength=1.0, pose_weights="none", vae="none", seed=0):
        from iasa_core import validate
        from iasa_core.model.loading import load_model
        from iasa_core.node_support import pick_device, pick_dtype

        dev = pick_device(device, bridge.torch_device())
        dt = pick_dtype(dtype, dev)
        # Checked before any file is read: API prompts bypass the widgets' min/max, and NaN passes them anyway.
        lora_1_strength = validate.finite(lora_1_strength, "lora_1_strength")
        lora_2_strength = validate.finite(lora_2_strength, "lora_2_strength")
        seed = validate.seed(seed, "seed")
        spec = model if model in PRESET_CHOICES else bridge.full_model_path(MODEL_FOLDERS, model, "IASA model file")
        loras = [(bridge.full_model_path("loras", name, "LoRA file"), float(strength))
                 for name, strength in ((lora_1, lora_1_strength), (lora_2, lora_2_strength))
                 if name and name != "none" and float(strength) != 0.0]
        pose_path = None if pose_weights in (None, "", "none") else bridge.full_model_path(
            "iasa", pose_weights, "Pose-encoder weights file")
        vae_path = None if vae in (None, "", "none") else bridge.full_model_path("vae", vae, "VAE file")
        bridge.soft_empty_cache()  # a model this node made before is being replaced: free what can be freed
        system = load_model(spec, allow_download=False, pose_weights=pose_path, vae=vae_path, loras=loras,
                            seed=int(seed)).to(dev, dt)
        return ({"system": system, "device": str(dev), "dtype": str(dt).replace("torch.", ""),
                 "source": system.source, "model": model,
                 "loras": [(name, strength) for name, strength in loras]},)


NODE_CLASS_MAPPINGS = {"IASAModelLoader": IASAModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"IASAModelLoader": "IASA Model Loader"}
