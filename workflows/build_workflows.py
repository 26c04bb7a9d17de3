"""Write every workflow of the pack in both ComfyUI formats from one graph description each.

    python workflows/build_workflows.py            # rewrite workflows/*.json and workflows/api/*_api.json
    python workflows/build_workflows.py --check    # exit 1 if a file differs from what it would write

UI format (version 0.4, what the ComfyUI frontend saves and loads) and API format (what POST /prompt
and `python -m iasa_core queue` take) come from the same description, so they cannot drift apart.
Our nodes' widget order comes from their INPUT_TYPES; ComfyUI core nodes' from
tests/data/comfy_core_nodes.json (read off ComfyUI 0.3.64 and its frontend 1.27.10).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORE_SPECS = ROOT / "tests" / "data" / "comfy_core_nodes.json"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
UPLOAD_EXTRAS = {"image_upload": ["image"], "video_upload": ["image"], "audio_upload": [None, None]}
# API-format files go one folder down: ComfyUI lists every *.json directly in workflows/ as a template
# (custom_nodes/*/workflows/*.json, one level only), and an API file opened there is an empty canvas.
API_DIR = "api"
# Layout: columns of nodes stacked top to bottom. The frontend draws a node's title bar above its pos and
# grows a node smaller than its slots and widgets need, so sizes are reckoned from those, with gaps.
NODE_WIDTH, COLUMN_GAP, ROW_GAP, TITLE_HEIGHT = 340, 60, 50, 30
SLOT_HEIGHT, WIDGET_HEIGHT = 22, 28
MEDIA_HEIGHT = 300  # nodes that show an image or video preview under their widgets
MEDIA_NODES = {"PreviewImage", "SaveImage", "SaveVideo", "LoadImage", "LoadVideo"}


@dataclass
class InputSpec:
    """One input of a node class: name, type and options, in INPUT_TYPES order."""

    name: str
    type: str
    options: dict[str, Any]
    required: bool

    @property
    def is_widget(self) -> bool:
        return self.type in WIDGET_TYPES

    def extras(self) -> list[Any]:
        """Frontend-only widget values stored after this widget (seed control, upload buttons)."""
        if self.type == "INT" and (self.options.get("control_after_generate")
                                   or (self.name in ("seed", "noise_seed")
                                       and self.options.get("control_after_generate") is not False)):
            return ["fixed"]
        for flag, values in UPLOAD_EXTRAS.items():
            if self.type == "COMBO" and self.options.get(flag):
                return list(values)
        return []


@dataclass
class NodeSpec:
    """A node class's inputs and outputs as the frontend sees them."""

    inputs: list[InputSpec]
    outputs: list[tuple[str, str]]
    display_name: str


def _ours() -> dict[str, NodeSpec]:
    sys.path.insert(0, str(ROOT))
    import nodes  # the pack's own nodes/ (ComfyUI's top-level `nodes` is not on this path)

    specs = {}
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        types = cls.INPUT_TYPES()
        inputs = []
        for section in ("required", "optional"):
            for key, spec in types.get(section, {}).items():
                kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
                inputs.append(InputSpec(key, "COMBO" if isinstance(kind, list) else kind, opts,
                                        section == "required"))
        names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
        specs[name] = NodeSpec(inputs, list(zip(names, cls.RETURN_TYPES, strict=True)),
                               nodes.NODE_DISPLAY_NAME_MAPPINGS.get(name, name))
    return specs


def _core() -> dict[str, NodeSpec]:
    data = json.loads(CORE_SPECS.read_text())
    specs = {}
    for name, d in data.items():
        inputs = [InputSpec(n, t, o or {}, section == "required")
                  for section in ("required", "optional") for n, t, _default, o in d.get(section, [])]
        if name in ("Note", "MarkdownNote"):
            inputs = [InputSpec("text", "STRING", {"multiline": True}, True)]
        specs[name] = NodeSpec(inputs, [(n, t) for n, t in d.get("outputs", [])], d.get("display_name", name))
    return specs


def node_specs() -> dict[str, NodeSpec]:
    """Our node classes and the ComfyUI core ones the workflows use."""
    return {**_core(), **_ours()}


@dataclass
class Node:
    """A node in a graph description: widget values by name, links by input name -> (node id, slot)."""

    id: int
    type: str
    column: int
    row: int
    widgets: dict[str, Any] = field(default_factory=dict)
    links: dict[str, tuple[int, int]] = field(default_factory=dict)
    title: str | None = None


def _default(spec: InputSpec) -> Any:
    if "default" in spec.options:
        return spec.options["default"]
    raise ValueError(f"input {spec.name!r} has no default: give its value in the workflow")


def node_height(node_type: str, specs: dict[str, NodeSpec]) -> int:
    """Body height (below the title bar) that fits a node's slot rows, widgets and any preview."""
    spec = specs[node_type]
    sockets = sum(1 for i in spec.inputs if not i.is_widget)
    widgets = sum(1 + len(i.extras()) for i in spec.inputs if i.is_widget)
    media = MEDIA_HEIGHT if node_type in MEDIA_NODES else 0
    return 20 + SLOT_HEIGHT * max(sockets, len(spec.outputs), 1) + WIDGET_HEIGHT * widgets + media


def _layout(nodes: list[Node], specs: dict[str, NodeSpec]) -> dict[int, list[int]]:
    """Top-left position of each node: its column, then below the nodes of lower rows in that column."""
    pos = {}
    for column in sorted({n.column for n in nodes}):
        y = 40 + TITLE_HEIGHT
        for n in sorted((n for n in nodes if n.column == column), key=lambda n: n.row):
            pos[n.id] = [40 + (NODE_WIDTH + COLUMN_GAP) * column, y]
            y += node_height(n.type, specs) + ROW_GAP + TITLE_HEIGHT
    return pos


def build(nodes: list[Node], note: str, specs: dict[str, NodeSpec]) -> tuple[dict, dict]:
    """(UI JSON, API JSON) of a graph."""
    by_id = {n.id: n for n in nodes}
    links: list[list[Any]] = []
    link_of: dict[tuple[int, str], int] = {}
    outgoing: dict[tuple[int, int], list[int]] = {}
    for n in nodes:
        for name, (src, slot) in n.links.items():
            out_type = specs[by_id[src].type].outputs[slot][1]
            link_id = len(links) + 1
            in_spec = next(i for i in specs[n.type].inputs if i.name == name)
            if in_spec.type != out_type:
                raise ValueError(f"node {n.id} {n.type}.{name} is {in_spec.type}, fed {out_type} by node {src}")
            links.append([link_id, src, slot, n.id, None, out_type])
            link_of[(n.id, name)] = link_id
            outgoing.setdefault((src, slot), []).append(link_id)
    ui_nodes, api = [], {}
    note_id = max(by_id) + 1
    positions = _layout(nodes, specs)
    for order, n in enumerate(nodes):
        spec = specs[n.type]
        unknown = set(n.widgets) | set(n.links)
        ui_inputs, values, api_inputs = [], [], {}
        for inp in spec.inputs:
            unknown.discard(inp.name)
            linked = (n.id, inp.name) in link_of
            if inp.is_widget:
                value = n.widgets[inp.name] if inp.name in n.widgets else _default(inp)
                values.append(value)
                values.extend(inp.extras())
                api_inputs[inp.name] = value
            elif inp.required and not linked:
                raise ValueError(f"node {n.id} {n.type}: required input {inp.name!r} is not connected")
            if not inp.is_widget or linked:
                entry = {"name": inp.name, "type": inp.type, "link": link_of.get((n.id, inp.name))}
                if inp.is_widget:
                    entry["widget"] = {"name": inp.name}
                if not inp.required:
                    entry["shape"] = 7
                if entry["link"] is not None:
                    links[entry["link"] - 1][4] = len(ui_inputs)
                ui_inputs.append(entry)
            if linked:
                src, slot = n.links[inp.name]
                api_inputs[inp.name] = [str(src), slot]
        if unknown:
            raise ValueError(f"node {n.id} {n.type} has no inputs {sorted(unknown)}")
        outputs = [{"name": name, "type": kind, "slot_index": i, "links": outgoing.get((n.id, i))}
                   for i, (name, kind) in enumerate(spec.outputs)]
        ui = {"id": n.id, "type": n.type, "pos": positions[n.id], "size": [NODE_WIDTH, node_height(n.type, specs)],
              "flags": {}, "order": order, "mode": 0,
              "inputs": ui_inputs, "outputs": outputs, "properties": {"Node name for S&R": n.type},
              "widgets_values": values}
        if n.title:
            ui["title"] = n.title
        ui_nodes.append(ui)
        api[str(n.id)] = {"inputs": api_inputs, "class_type": n.type,
                          "_meta": {"title": n.title or spec.display_name}}
    bottom = max(positions[n.id][1] + node_height(n.type, specs) for n in nodes)
    ui_nodes.append({"id": note_id, "type": "Note", "pos": [40, bottom + ROW_GAP + TITLE_HEIGHT],
                     "size": [2 * NODE_WIDTH + COLUMN_GAP, 280], "flags": {}, "order": len(nodes), "mode": 0,
                     "inputs": [], "outputs": [], "properties": {}, "widgets_values": [note],
                     "color": "#432", "bgcolor": "#653"})
    ui_graph = {"last_node_id": note_id, "last_link_id": len(links), "nodes": ui_nodes, "links": links,
                "groups": [], "config": {}, "extra": {"ds": {"scale": 1, "offset": [0, 0]}}, "version": 0.4}
    return ui_graph, api


INPUTS_NOTE = ("Inputs: copy workflows/inputs/iasa_speech.wav (IASA Load Audio), iasa_character.png (Load Image) "
               "and iasa_character_pose.json (IASA Load Poses) from this pack into ComfyUI/input, then press R to refresh. "
               "Your own: speech (wav/mp3/flac...; IASA Load Audio has no upload button: copy it into ComfyUI/input "
               "or connect core Load Audio to its 'audio' input), a photo of one person (upload in Load Image), and "
               "that person's pose as POSE_KEYPOINT JSON (e.g. saved from IASA DWPose) or use reference_image.")


def _tail(first_id: int, audio: tuple[int, int], image: tuple[int, int], poses: tuple[int, int], column: int,
          model: str = "embedded", sampler: dict | None = None, prefix: str = "video/iasa") -> list[Node]:
    """Model loader -> sampler -> video (frames + fps + audio) -> Save Video."""
    loader, samp, video, save = first_id, first_id + 1, first_id + 2, first_id + 3
    return [
        Node(loader, "IASAModelLoader", column, 1, {"model": model}),
        Node(samp, "IASASampler", column + 1, 0, {"sampler": "auto", "steps": 0, "seed": 0, **(sampler or {})},
             {"model": (loader, 0), "reference_image": image, "poses": poses}),
        Node(video, "IASAVideo", column + 2, 0, {"fps": 25.0},
             {"images": (samp, 0), "fps": (samp, 1), "audio": audio}),
        Node(save, "SaveVideo", column + 3, 0, {"filename_prefix": prefix, "format": "auto", "codec": "auto"},
             {"video": (video, 0)}),
    ]


# Native Wan graphs: the public files a user loads (the integration test swaps in tiny stand-ins by these names).
NATIVE_WAN_SHARED = {
    "text_encoder": "umt5_xxl_fp8_e4m3fn_scaled.safetensors",  # Comfy-Org/Wan_2.1_ComfyUI_repackaged
    "vae": "wan_2.1_vae.safetensors",  # Comfy-Org/Wan_2.1_ComfyUI_repackaged
    "clip_vision": "clip_vision_h.safetensors",  # Comfy-Org/Wan_2.1_ComfyUI_repackaged
    "lora": "lightx2v_I2V_14B_480p_cfg_step_distill_rank64_bf16.safetensors",  # Kijai/WanVideo_comfy, Lightx2v/
}
NATIVE_WAN_FILES = {
    "animate": {**NATIVE_WAN_SHARED, "unet": "wan2.2_animate_14B_bf16.safetensors"},  # Comfy-Org/Wan_2.2_ComfyUI_Repackaged
    "fun_control": {**NATIVE_WAN_SHARED, "unet": "Wan2_1-Fun-V1_1-14B-Control_fp8_e4m3fn.safetensors"},  # Kijai/WanVideo_comfy, Fun/
}
NATIVE_WAN_FPS = 16.0  # Wan 2.1/2.2 make 16 frames a second
NATIVE_WAN_SIZE = 640  # square like the bundled speaker; use your photo's aspect ratio (e.g. 480x832)
NATIVE_WAN_PROMPT = ("a person talking to the camera with natural hand gestures, expressive face, clear mouth "
                     "movements, steady camera, sharp details")
NATIVE_WAN_NEGATIVE = ("blurry, distorted face, deformed hands, extra fingers, flicker, static image, frozen, "
                       "low quality, watermark, text")


def _native_wan(wan_node: str, files: dict[str, str], wan_widgets: dict[str, Any], image_input: str,
                pose_input: str, face: bool, prefix: str) -> list[Node]:
    """Speech -> IASA Motion -> pose video -> a native Wan node, sampled by a LoRA'd, IASA-patched native Wan."""
    trims = wan_node == "WanAnimateToVideo"  # its latent starts with the reference frame: cut it after sampling
    nodes = [
        Node(1, "IASALoadAudio", 0, 0, {"audio_file": "iasa_speech.wav", "max_seconds": 600.0}),
        Node(2, "LoadImage", 0, 1, {"image": "iasa_speaker.png"}),
        Node(3, "IASALoadPoses", 0, 2, {"pose_file": "iasa_speaker_pose.json", "fps": NATIVE_WAN_FPS}),
        Node(4, "IASAMotion", 1, 0, {"method": "procedural", "fps": NATIVE_WAN_FPS, "seed": 0, "seconds": 0.0},
             {"audio": (1, 0), "reference_pose": (3, 0)}),
        Node(5, "IASAVideoLength", 1, 1, {"max_frames": 81}, {"poses": (4, 0), "audio": (1, 0)}),
        Node(6, "IASARenderPoses", 1, 2, {"width": NATIVE_WAN_SIZE, "height": 0, "hands": True, "face": face,
                                          "bgr": False, "min_score": 0.3, "mouth": False}, {"poses": (4, 0)}),
        Node(7, "UNETLoader", 2, 0, {"unet_name": files["unet"], "weight_dtype": "default"}),
        Node(8, "LoraLoaderModelOnly", 2, 1, {"lora_name": files["lora"], "strength_model": 1.0},
             {"model": (7, 0)}),
        Node(9, "IASAPatchModel", 2, 2, {}, {"model": (8, 0), "poses": (4, 0)}),
        Node(10, "CLIPLoader", 3, 0, {"clip_name": files["text_encoder"], "type": "wan", "device": "default"}),
        Node(11, "CLIPTextEncode", 3, 1, {"text": NATIVE_WAN_PROMPT}, {"clip": (10, 0)}, title="Prompt"),
        Node(12, "CLIPTextEncode", 3, 2, {"text": NATIVE_WAN_NEGATIVE}, {"clip": (10, 0)}, title="Negative prompt"),
        Node(13, "CLIPVisionLoader", 3, 3, {"clip_name": files["clip_vision"]}),
        Node(14, "CLIPVisionEncode", 3, 4, {"crop": "none"}, {"clip_vision": (13, 0), "image": (2, 0)}),
        Node(15, "VAELoader", 3, 5, {"vae_name": files["vae"]}),
        Node(16, wan_node, 4, 0, {"length": 81, **wan_widgets},
             {"positive": (11, 0), "negative": (12, 0), "vae": (15, 0), "length": (5, 0),
              "clip_vision_output": (14, 0), image_input: (2, 0), pose_input: (6, 0)}),
        Node(17, "KSampler", 4, 1, {"seed": 0, "steps": 4, "cfg": 1.0, "sampler_name": "euler",
                                    "scheduler": "simple", "denoise": 1.0},
             {"model": (9, 0), "positive": (16, 0), "negative": (16, 1), "latent_image": (16, 2)}),
    ]
    samples = (17, 0)
    if trims:
        nodes.append(Node(18, "TrimVideoLatent", 5, 0, {"trim_amount": 1}, {"samples": samples, "trim_amount": (16, 3)}))
        samples = (18, 0)
    nodes += [
        Node(19, "VAEDecode", 5, 1, {}, {"samples": samples, "vae": (15, 0)}),
        Node(20, "CreateVideo", 5, 2, {"fps": NATIVE_WAN_FPS}, {"images": (19, 0), "fps": (5, 1), "audio": (5, 2)}),
        Node(21, "SaveVideo", 6, 0, {"filename_prefix": prefix, "format": "auto", "codec": "auto"},
             {"video": (20, 0)}),
    ]
    return nodes


def native_wan_note(kind: str) -> str:
    """The note of a native Wan workflow: what it does and which public file goes where."""
    files = NATIVE_WAN_FILES[kind]
    model = {"animate": "Wan2.2-Animate-14B: " + files["unet"] + " from Comfy-Org/Wan_2.2_ComfyUI_Repackaged "
                        "(split_files/diffusion_models; an fp8 copy of yours works the same)",
             "fun_control": "Wan2.1-Fun-V1.1-14B-Control: " + files["unet"] + " from Kijai/WanVideo_comfy (Fun/); "
                            "the 1.3B wan2.1_fun_control_1.3B_bf16.safetensors (Comfy-Org/Wan_2.1_ComfyUI_repackaged) "
                            "also works: bypass the LoRA (Ctrl+B) and use 20 steps, cfg 5"}[kind]
    how = {"animate": "The pose video drives WanAnimateToVideo (body and hands; the face follows the reference "
                      "photo, as no face video is connected).",
           "fun_control": "The pose video, with the face points so that the mouth moves, is WanFunControlToVideo's "
                          "control video; the photo is its start image."}[kind]
    return (
        "Speech + photo -> co-speech video on ComfyUI's own Wan, 4 steps, with IASA sparse attention.\n"
        "IASA Motion turns the speech into poses of the person in the photo (16 fps, Wan's rate); IASA Render "
        "Poses draws them. " + how + " IASA Patch Model limits each frame's self-attention to its most "
        "pose-similar past frames and matching body regions. IASA Video Length sets the frame count from the "
        "speech (up to max_frames) and gives Create Video the fps and the sound.\n"
        "Inputs: copy workflows/inputs/iasa_speech.wav, iasa_speaker.png and iasa_speaker_pose.json into "
        "ComfyUI/input (press R), or your own speech, photo and its pose (IASA DWPose on the photo in place of "
        "IASA Load Poses). Keep the photo's aspect ratio: IASA Render Poses' height 0 follows it, and the Wan "
        "node's width x height should have it too (640x640 here; e.g. 480x832 for a portrait photo).\n"
        "Files (public; nothing is downloaded for you):\n"
        "- models/diffusion_models: " + model + ".\n"
        "- models/loras: " + files["lora"] + " (Kijai/WanVideo_comfy, Lightx2v/): the 4-step, cfg 1 distill "
        "LoRA.\n"
        "- models/text_encoders: " + files["text_encoder"] + "; models/vae: " + files["vae"] + "; "
        "models/clip_vision: " + files["clip_vision"] + " (all three from Comfy-Org/Wan_2.1_ComfyUI_repackaged, "
        "split_files/).\n"
        "Speed: the paper's 25.3 FPS / 13.1x were measured with a MimicMotion (SVD) teacher, not a 14B Wan; "
        "expect far less here.")


def workflows() -> dict[str, tuple[list[Node], str]]:
    """Every workflow of the pack: name -> (nodes, note)."""
    talking = [
        Node(1, "IASALoadAudio", 0, 0, {"audio_file": "iasa_speech.wav", "max_seconds": 600.0}),
        Node(2, "LoadImage", 0, 1, {"image": "iasa_character.png"}),
        Node(3, "IASALoadPoses", 0, 2, {"pose_file": "iasa_character_pose.json", "fps": 25.0}),
        Node(4, "IASAMotion", 1, 0, {"method": "procedural", "fps": 25.0, "seed": 0, "seconds": 0.0},
             {"audio": (1, 0), "reference_pose": (3, 0)}),
        *_tail(5, audio=(1, 0), image=(2, 0), poses=(4, 0), column=1, prefix="video/iasa_talking"),
    ]
    talking_note = (
        "Audio + photo -> talking video.\n" + INPUTS_NOTE + "\n"
        "IASA Motion turns the speech into poses of the person in the photo (method procedural: no weights "
        "needed; the pose file gives where the person stands). "
        "IASA Model Loader: 'embedded' is the small trained 4-step IASA student shipped with the pack (cartoon "
        "speakers at 128x128, like iasa_character.png; it runs faster than real time on a CPU); a trained IASA "
        "student .safetensors in ComfyUI/models/iasa appears in its list. "
        "Save Video writes an mp4 with the speech to ComfyUI/output/video/.")
    emage = [
        Node(1, "IASALoadAudio", 0, 0, {"audio_file": "iasa_speech.wav", "max_seconds": 600.0}),
        Node(2, "LoadImage", 0, 1, {"image": "iasa_speaker.png"}),
        Node(3, "IASAMotion", 1, 0, {"method": "emage", "fps": 25.0, "seed": 0, "seconds": 0.0,
                                     "emage_model": "emage_audio", "smplx_model": "SMPLX_NEUTRAL_2020.npz"},
             {"audio": (1, 0), "reference_image": (2, 0)}),
        *_tail(4, audio=(1, 0), image=(2, 0), poses=(3, 0), column=1, prefix="video/iasa_emage"),
    ]
    emage_note = (
        "Audio + photo -> talking video with EMAGE motion; the person's pose is found in the photo with DWPose.\n"
        "Inputs: copy workflows/inputs/iasa_speech.wav (IASA Load Audio) and iasa_speaker.png (Load Image) into "
        "ComfyUI/input, or use your own speech and photo.\nWeights (nothing is downloaded for you):\n"
        "- EMAGE: the Hugging Face repo H-Liu1997/emage_audio (config.json, pytorch_model.bin, emage_vq/ ...) as "
        "the folder ComfyUI/models/emage/emage_audio/ (IASA Motion's emage_model lists the folders there).\n"
        "- SMPL-X: SMPLX_NEUTRAL_2020.npz from https://smpl-x.is.tue.mpg.de (free registration, MPI licence; "
        "never shipped with this pack) as ComfyUI/models/smplx/SMPLX_NEUTRAL_2020.npz (smplx_model).\n"
        "- DWPose (finds the pose of the person in Load Image): yolox_l.onnx and dw-ll_ucoco_384.onnx from "
        "huggingface.co/yzd-v/DWPose in ComfyUI/models/dwpose/.\n"
        "Press R (refresh) after copying them. emage_model and smplx_model are preset to these names; pick others "
        "if yours differ. DWPose is trained on photos: use a real photo of a person (the drawn iasa_speaker.png "
        "may not be detected). Model: 'embedded', the small trained student shipped with the pack (trained on "
        "128x128 cartoon speakers: a real photo shows the pipeline, not photographic quality).")
    reenact = [
        Node(1, "LoadVideo", 0, 0, {"file": "driving.mp4"}),
        Node(2, "GetVideoComponents", 1, 0, {}, {"video": (1, 0)}),
        Node(3, "LoadImage", 0, 1, {"image": "iasa_speaker.png"}),
        Node(4, "IASADWPose", 2, 0, {"choose": "largest", "device": "auto", "fps": 25.0},
             {"image": (2, 0), "fps": (2, 2)}),
        *_tail(5, audio=(2, 1), image=(3, 0), poses=(4, 0), column=2, prefix="video/iasa_reenactment"),
    ]
    reenact_note = (
        "Pose-video reenactment: the person in the photo performs the motion of a driving video.\n"
        "Put a driving video (one person, upper body visible; its sound is kept) in ComfyUI/input as "
        "driving.mp4 or pick another in Load Video, and a photo in Load Image. The photo and the video must "
        "have the same aspect ratio (the poses are made on the video's canvas).\n"
        "IASA DWPose needs yolox_l.onnx and dw-ll_ucoco_384.onnx (huggingface.co/yzd-v/DWPose) in "
        "ComfyUI/models/dwpose/.")
    mask = [
        Node(1, "IASALoadPoses", 0, 0, {"pose_file": "iasa_speaker_motion.json", "fps": 25.0}),
        Node(2, "IASASparsePlan", 1, 0, {"width": 256, "height": 256, "frames": 0, "top_k": 2,
                                         "block_size": 32, "mode": "exact"}, {"poses": (1, 0)}),
        Node(3, "PreviewImage", 2, 0, {}, {"images": (2, 1)}),
    ]
    mask_note = (
        "Sparse attention plan preview: which query/key blocks the IASA student computes for these poses "
        "(grey: within a frame; coloured: across frames, by body region), with each latent frame's region map.\n"
        "Input: copy workflows/inputs/iasa_speaker_motion.json (33 frames of the speaker talking) into "
        "ComfyUI/input, or load any POSE_KEYPOINT JSON; or connect IASA Motion / IASA DWPose poses instead.\n"
        "frames 0 = all poses. block_size 32 shows the regions finely; the sampler's kernels use 128. The density "
        "(fraction of blocks computed, 1.0 = dense) is printed on the preview and is the node's third output.")
    animate = _native_wan(
        "WanAnimateToVideo", NATIVE_WAN_FILES["animate"],
        {"width": NATIVE_WAN_SIZE, "height": NATIVE_WAN_SIZE, "batch_size": 1, "continue_motion_max_frames": 5,
         "video_frame_offset": 0}, image_input="reference_image", pose_input="pose_video", face=False,
        prefix="video/iasa_wan_animate")
    fun = _native_wan(
        "WanFunControlToVideo", NATIVE_WAN_FILES["fun_control"],
        {"width": NATIVE_WAN_SIZE, "height": NATIVE_WAN_SIZE, "batch_size": 1}, image_input="start_image",
        pose_input="control_video", face=True, prefix="video/iasa_wan_fun_control")
    return {"iasa_talking_video": (talking, talking_note),
            "iasa_talking_video_emage_dwpose": (emage, emage_note),
            "iasa_pose_reenactment": (reenact, reenact_note),
            "iasa_mask_preview": (mask, mask_note),
            "iasa_wan_animate_audio": (animate, native_wan_note("animate")),
            "iasa_wan_fun_control_audio": (fun, native_wan_note("fun_control"))}


def render_all() -> dict[str, str]:
    """File name -> exact text of every workflow file."""
    specs = node_specs()
    out = {}
    for name, (graph, note) in workflows().items():
        ui, api = build(graph, note, specs)
        out[f"{name}.json"] = json.dumps(ui, indent=2) + "\n"
        out[f"{API_DIR}/{name}_api.json"] = json.dumps(api, indent=2) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    """Write (or check) the workflow files."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render_all().items():
        path = HERE / name
        path.parent.mkdir(exist_ok=True)
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print("stale workflow files (run python workflows/build_workflows.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
