"""Every workflow JSON: node classes exist, links are consistent, widget values fit INPUT_TYPES, API == UI graph.

The checks here are written independently of workflows/build_workflows.py (which writes the files), so a
mistake in the builder shows up as a failure rather than being repeated.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / "workflows"
CORE = json.loads((ROOT / "tests" / "data" / "comfy_core_nodes.json").read_text())
FRONTEND_ONLY = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN"}
NATIVE = ["iasa_wan_animate_audio", "iasa_wan_fun_control_audio"]
NAMES = ["iasa_talking_video", "iasa_talking_video_emage_dwpose", "iasa_pose_reenactment", "iasa_mask_preview",
         *NATIVE]


@pytest.fixture(scope="module")
def ours() -> dict:
    sys.path.insert(0, str(ROOT))
    import nodes

    return nodes.NODE_CLASS_MAPPINGS


def _inputs(class_type: str, ours: dict) -> list[tuple[str, str, dict, bool]]:
    """(name, type, options, required) of a class, in widget order; COMBO for list types."""
    if class_type in ours:
        types = ours[class_type].INPUT_TYPES()
        return [(name, "COMBO" if isinstance(spec[0], list) else spec[0], spec[1] if len(spec) > 1 else {},
                 section == "required")
                for section in ("required", "optional") for name, spec in types.get(section, {}).items()]
    spec = CORE[class_type]
    return [(n, t, o or {}, section == "required") for section in ("required", "optional")
            for n, t, _d, o in spec.get(section, [])]


def _combo_options(class_type: str, name: str, ours: dict) -> list | None:
    if class_type in ours:
        spec = {**ours[class_type].INPUT_TYPES().get("required", {}),
                **ours[class_type].INPUT_TYPES().get("optional", {})}[name]
        return spec[0] if isinstance(spec[0], list) else None
    return None


def _outputs(class_type: str, ours: dict) -> list[str]:
    if class_type in ours:
        return list(ours[class_type].RETURN_TYPES)
    return [t for _n, t in CORE[class_type]["outputs"]]


def _extras(name: str, kind: str, opts: dict) -> int:
    """Frontend widget values stored after a widget: seed controls and upload buttons."""
    if kind == "INT" and (opts.get("control_after_generate") or (
            name in ("seed", "noise_seed") and opts.get("control_after_generate") is not False)):
        return 1
    if kind == "COMBO":
        if opts.get("image_upload") or opts.get("video_upload"):
            return 1
        if opts.get("audio_upload"):
            return 2
    return 0


def _load(name: str) -> tuple[dict, dict]:
    return (json.loads((WORKFLOWS / f"{name}.json").read_text()),
            json.loads((WORKFLOWS / "api" / f"{name}_api.json").read_text()))


def ui_to_api(ui: dict, ours: dict) -> dict:
    """The frontend's graphToPrompt for plain graphs: Notes dropped, widgets by name, links as [id, slot]."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY or node["mode"] in (2, 4):
            continue
        values = list(node["widgets_values"])
        inputs = {}
        for name, kind, opts, _req in _inputs(node["type"], ours):
            if kind in WIDGET_TYPES or kind == "COMBO":
                inputs[name] = values.pop(0)
                del values[:_extras(name, kind, opts)]
        for entry in node["inputs"]:
            if entry["link"] is not None:
                _lid, src, slot, _dst, _dslot, _t = links[entry["link"]]
                inputs[entry["name"]] = [str(src), slot]
        api[str(node["id"])] = {"inputs": inputs, "class_type": node["type"]}
    return api


@pytest.mark.parametrize("name", NAMES)
def test_node_classes_exist(name, ours):
    ui, api = _load(name)
    for node in ui["nodes"]:
        assert node["type"] in ours or node["type"] in CORE, f"{name}: unknown node type {node['type']}"
    assert any(n["type"] == "Note" and n["widgets_values"][0].strip() for n in ui["nodes"]), "no note"
    for node in api.values():
        assert node["class_type"] in ours or node["class_type"] in CORE
        assert node["class_type"] not in FRONTEND_ONLY


@pytest.mark.parametrize("name", NAMES)
def test_links_are_consistent(name, ours):
    ui, _ = _load(name)
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == max((lk[0] for lk in ui["links"]), default=0)
    seen_inputs = set()
    for link_id, src, src_slot, dst, dst_slot, kind in ui["links"]:
        assert src in nodes and dst in nodes
        out = nodes[src]["outputs"][src_slot]
        assert link_id in (out["links"] or []) and out["type"] == kind
        assert _outputs(nodes[src]["type"], ours)[src_slot] == kind
        entry = nodes[dst]["inputs"][dst_slot]
        assert entry["link"] == link_id and entry["type"] == kind
        declared = {n: t for n, t, _o, _r in _inputs(nodes[dst]["type"], ours)}
        assert declared[entry["name"]] == kind, f"{nodes[dst]['type']}.{entry['name']} is not {kind}"
        seen_inputs.add(link_id)
    all_input_links = [e["link"] for n in ui["nodes"] for e in n["inputs"] if e["link"] is not None]
    assert sorted(all_input_links) == sorted(seen_inputs)  # each link feeds exactly one input
    for n in ui["nodes"]:
        for out in n["outputs"]:
            for link_id in out["links"] or []:
                assert any(lk[0] == link_id and lk[1] == n["id"] for lk in ui["links"])


@pytest.mark.parametrize("name", NAMES)
def test_widget_values_fit_input_types(name, ours):
    ui, _ = _load(name)
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            assert len(node["widgets_values"]) == 1
            continue
        spec = _inputs(node["type"], ours)
        widgets = [(n, k, o) for n, k, o, _r in spec if k in WIDGET_TYPES or k == "COMBO"]
        expected = sum(1 + _extras(n, k, o) for n, k, o in widgets)
        assert len(node["widgets_values"]) == expected, f"{name}: {node['type']} widget count"
        values = list(node["widgets_values"])
        for wname, kind, opts in widgets:
            value = values.pop(0)
            del values[:_extras(wname, kind, opts)]
            if kind == "INT":
                assert isinstance(value, int) and opts.get("min", value) <= value <= opts.get("max", value)
            elif kind == "FLOAT":
                assert isinstance(value, (int, float)) and opts.get("min", value) <= value <= opts.get("max", value)
            elif kind == "BOOLEAN":
                assert isinstance(value, bool)
            elif kind == "COMBO":
                options = _combo_options(node["type"], wname, ours)
                file_listing = wname in ("audio_file", "model", "pose_file", "emage_model", "smplx_model",
                                         "lora_1", "lora_2", "pose_weights", "vae", "unet_name", "lora_name",
                                         "clip_name", "vae_name")  # depend on the folders
                if options is not None and not file_listing:
                    assert value in options, f"{node['type']}.{wname}={value!r} not in {options}"
        # every required socket input is connected
        connected = {e["name"] for e in node["inputs"] if e["link"] is not None}
        for iname, kind, _o, required in spec:
            if required and kind not in WIDGET_TYPES and kind != "COMBO":
                assert iname in connected, f"{name}: {node['type']}.{iname} is required but not connected"


@pytest.mark.parametrize("name", NAMES)
def test_api_json_equals_ui_graph(name, ours):
    ui, api = _load(name)
    converted = ui_to_api(ui, ours)
    stripped = {k: {"inputs": v["inputs"], "class_type": v["class_type"]} for k, v in api.items()}
    assert converted == stripped


def test_files_are_what_the_builder_writes():
    sys.path.insert(0, str(WORKFLOWS))
    import build_workflows

    rendered = build_workflows.render_all()
    assert sorted(rendered) == sorted([f"{n}.json" for n in NAMES] + [f"api/{n}_api.json" for n in NAMES])
    for file_name, text in rendered.items():
        assert (WORKFLOWS / file_name).read_text() == text, f"{file_name} is stale: run workflows/build_workflows.py"


def test_template_folder_holds_only_ui_workflows_with_thumbnails():
    """ComfyUI lists custom_nodes/<pack>/workflows/*.json (one level) as templates; an API-format file there
    opens as an empty canvas ("Workflow does not contain a valid version"). Each template has <name>.jpg,
    the thumbnail the frontend asks for (jpg only), kept small."""
    listed = sorted(p.stem for p in WORKFLOWS.glob("*.json"))
    assert listed == sorted(NAMES)
    for name in listed:
        assert json.loads((WORKFLOWS / f"{name}.json").read_text())["version"] == 0.4
        thumb = WORKFLOWS / f"{name}.jpg"
        assert thumb.is_file() and thumb.stat().st_size < 40_000, f"{name}: no small thumbnail"
        assert thumb.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    assert sorted(p.name for p in (WORKFLOWS / "api").glob("*.json")) == sorted(f"{n}_api.json" for n in NAMES)


def _rects(ui: dict) -> list[tuple[int, float, float, float, float]]:
    """(id, left, top, right, bottom) of each node as drawn: the title bar sits above pos."""
    return [(n["id"], n["pos"][0], n["pos"][1] - 30, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
            for n in ui["nodes"]]


@pytest.mark.parametrize("name", NAMES)
def test_nodes_do_not_overlap(name, ours):
    ui, _ = _load(name)
    rects = _rects(ui)
    for i, (a, l1, t1, r1, b1) in enumerate(rects):
        for b, l2, t2, r2, b2 in rects[i + 1:]:
            assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, f"{name}: nodes {a} and {b} overlap"
    # A node smaller than its slots and widgets need is grown by the frontend (into its neighbour).
    for node in ui["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        sockets = [n for n, k, _o, _r in _inputs(node["type"], ours) if not (k in WIDGET_TYPES or k == "COMBO")]
        rows = max(len(sockets), len(node["outputs"]), 1)
        assert node["size"][1] >= 20 * rows + 24 * len(node["widgets_values"]), f"{name}: node {node['id']} too small"


def test_default_workflow_inputs_are_shipped():
    _, api = _load("iasa_talking_video")
    files = {v["inputs"][k] for v in api.values() for k in ("audio_file", "image", "pose_file")
             if isinstance(v["inputs"].get(k), str)}
    assert files == {"iasa_speech.wav", "iasa_character.png", "iasa_character_pose.json"}
    for f in files:
        assert (WORKFLOWS / "inputs" / f).is_file()


@pytest.mark.parametrize("name", NAMES)
def test_ui_structure(name, ours):
    ui, api = _load(name)
    assert ui["version"] == 0.4 and isinstance(ui["groups"], list) and isinstance(ui["config"], dict)
    ids = [n["id"] for n in ui["nodes"]]
    assert len(ids) == len(set(ids)), "node ids repeat"
    link_ids = [lk[0] for lk in ui["links"]]
    assert len(link_ids) == len(set(link_ids)), "link ids repeat"
    for node in ui["nodes"]:
        for key in ("id", "type", "pos", "size", "flags", "order", "mode", "inputs", "outputs", "properties",
                    "widgets_values"):
            assert key in node, f"{name}: node {node['id']} has no {key!r}"
        if node["type"] in FRONTEND_ONLY:
            assert str(node["id"]) not in api
            continue
        assert node["properties"].get("Node name for S&R") == node["type"]
        spec = {n: k for n, k, _o, _r in _inputs(node["type"], ours)}
        names = [e["name"] for e in node["inputs"]]
        assert len(names) == len(set(names)), f"{name}: {node['type']} lists an input twice"
        for entry in node["inputs"]:
            kind = spec[entry["name"]]
            is_widget = kind in WIDGET_TYPES or kind == "COMBO"
            if is_widget:  # a widget input is listed only when connected, and says which widget it replaces
                assert entry["link"] is not None and entry.get("widget") == {"name": entry["name"]}
            else:
                assert "widget" not in entry
        sockets = [n for n, k in spec.items() if not (k in WIDGET_TYPES or k == "COMBO")]
        assert sockets == [n for n in names if n in sockets], f"{name}: {node['type']} socket inputs missing/out of order"
        assert [o["type"] for o in node["outputs"]] == _outputs(node["type"], ours)
        assert api[str(node["id"])]["_meta"]["title"]


def test_connected_widget_inputs():
    """IASAVideo takes the frame rate from the sampler's fps output (a widget input fed by a link)."""
    for name in ("iasa_talking_video", "iasa_talking_video_emage_dwpose", "iasa_pose_reenactment"):
        ui, api = _load(name)
        video = next(n for n in ui["nodes"] if n["type"] == "IASAVideo")
        fps = next(e for e in video["inputs"] if e["name"] == "fps")
        assert fps["widget"] == {"name": "fps"} and fps["link"] is not None
        assert len(video["widgets_values"]) == 1  # the widget keeps its slot (and value) while connected
        src = next(lk for lk in ui["links"] if lk[0] == fps["link"])
        assert src[5] == "FLOAT"
        assert api[str(video["id"])]["inputs"]["fps"] == [str(src[1]), src[2]]
        for node in api.values():
            if node["class_type"] == "SaveVideo":
                assert node["inputs"]["video"] == [str(video["id"]), 0]


def test_workflow_inputs_are_shipped():
    """Every file a workflow loads is in workflows/inputs (except the user's own driving video)."""
    for name in NAMES:
        _, api = _load(name)
        for node in api.values():
            for key in ("audio_file", "image", "pose_file", "file"):
                value = node["inputs"].get(key)
                if isinstance(value, str) and not (name == "iasa_pose_reenactment" and key == "file"):
                    assert (WORKFLOWS / "inputs" / value).is_file(), f"{name}: {value} is not shipped"


def test_inputs_are_what_make_inputs_writes(tmp_path):
    """The shipped inputs are reproducible from make_inputs.py and fit together."""
    import wave

    import numpy as np
    from PIL import Image

    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(WORKFLOWS / "inputs"))
    import make_inputs

    from iasa_core.pose.sequence import PoseSequence

    make_inputs.make_inputs(str(tmp_path))
    shipped = WORKFLOWS / "inputs"
    a = np.asarray(Image.open(shipped / "iasa_speaker.png").convert("RGB"))
    b = np.asarray(Image.open(tmp_path / "iasa_speaker.png").convert("RGB"))
    assert a.shape == (256, 256, 3) and np.array_equal(a, b)

    pose = PoseSequence.load_json(shipped / "iasa_speaker_pose.json")
    assert (len(pose), pose.height, pose.width) == (1, 256, 256)
    np.testing.assert_allclose(pose.keypoints, PoseSequence.load_json(tmp_path / "iasa_speaker_pose.json").keypoints,
                               atol=1e-4)
    motion = PoseSequence.load_json(shipped / "iasa_speaker_motion.json")
    assert (len(motion), motion.height, motion.width, motion.fps) == (33, 256, 256, 25.0)
    np.testing.assert_allclose(motion.keypoints[0], pose.keypoints[0], atol=0.06)  # same person, same start

    def samples(path):
        with wave.open(str(path)) as wf:
            assert (wf.getnchannels(), wf.getframerate(), wf.getsampwidth()) == (1, 16000, 2)
            return np.frombuffer(wf.readframes(wf.getnframes()), "<i2").astype(np.int32)

    x, y = samples(shipped / "iasa_speech.wav"), samples(tmp_path / "iasa_speech.wav")
    assert abs(len(x) / 16000 - 3.0) < 0.01 and (shipped / "iasa_speech.wav").stat().st_size < 150_000
    assert len(x) == len(y) and np.abs(x - y).max() <= 1
    frames = x[: len(x) // 400 * 400].reshape(-1, 400)  # 25 ms windows: speech has loud parts and pauses
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1))
    assert (rms < 0.01 * rms.max()).mean() > 0.1 and (rms > 0.3 * rms.max()).mean() > 0.2


# ---------------------------------------------------------------------- audio-driven graphs on native Wan


def _feeds(api: dict, node_id: str, name: str) -> dict:
    """The API node that feeds input ``name`` of ``node_id``."""
    src = api[node_id]["inputs"][name]
    assert isinstance(src, list), f"{api[node_id]['class_type']}.{name} is not connected"
    return api[src[0]]


def _one(api: dict, class_type: str) -> str:
    ids = [k for k, v in api.items() if v["class_type"] == class_type]
    assert len(ids) == 1, f"{len(ids)} {class_type} nodes"
    return ids[0]


@pytest.mark.parametrize("name, wan_node, pose_input, image_input", [
    ("iasa_wan_animate_audio", "WanAnimateToVideo", "pose_video", "reference_image"),
    ("iasa_wan_fun_control_audio", "WanFunControlToVideo", "control_video", "start_image")])
def test_native_wan_graph_is_audio_to_video_on_core_nodes(name, wan_node, pose_input, image_input, ours):
    """audio -> IASA Motion -> IASA Render Poses -> native Wan node; UNETLoader -> LoRA -> IASA Patch Model ->
    KSampler; the video's length, fps and sound come from the same poses and speech."""
    _, api = _load(name)
    for node in api.values():  # only ComfyUI core nodes and ours
        assert node["class_type"] in ours or not CORE[node["class_type"]]["python_module"].startswith("custom_nodes")
    motion, wan, sampler = _one(api, "IASAMotion"), _one(api, wan_node), _one(api, "KSampler")
    assert _feeds(api, motion, "audio")["class_type"] == "IASALoadAudio"
    assert api[motion]["inputs"]["fps"] == 16.0  # Wan's frame rate
    render = api[wan]["inputs"][pose_input][0]
    assert api[render]["class_type"] == "IASARenderPoses" and api[render]["inputs"]["poses"] == [motion, 0]
    assert _feeds(api, wan, image_input)["class_type"] == "LoadImage"

    patch = api[sampler]["inputs"]["model"][0]
    assert api[patch]["class_type"] == "IASAPatchModel" and api[patch]["inputs"]["poses"] == [motion, 0]
    lora = _feeds(api, patch, "model")
    assert lora["class_type"] == "LoraLoaderModelOnly" and "lightx2v" in lora["inputs"]["lora_name"]
    assert _feeds(api, api[patch]["inputs"]["model"][0], "model")["class_type"] == "UNETLoader"
    assert (api[sampler]["inputs"]["steps"], api[sampler]["inputs"]["cfg"]) == (4, 1.0)
    assert [api[sampler]["inputs"][k] for k in ("positive", "negative", "latent_image")] == \
        [[wan, 0], [wan, 1], [wan, 2]]

    size = _one(api, "IASAVideoLength")
    assert api[size]["inputs"]["poses"] == [motion, 0] and api[wan]["inputs"]["length"] == [size, 0]
    create = _one(api, "CreateVideo")
    assert api[create]["inputs"]["fps"] == [size, 1] and api[create]["inputs"]["audio"] == [size, 2]
    decoded = _feeds(api, create, "images")
    assert decoded["class_type"] == "VAEDecode"
    latent = decoded["inputs"]["samples"]
    if wan_node == "WanAnimateToVideo":  # its latent starts with the reference frame: trimmed after sampling
        assert api[latent[0]]["class_type"] == "TrimVideoLatent"
        assert api[latent[0]]["inputs"] == {"samples": [sampler, 0], "trim_amount": [wan, 3]}
    else:
        assert latent == [sampler, 0]
    assert _feeds(api, _one(api, "SaveVideo"), "video")["class_type"] == "CreateVideo"


@pytest.mark.parametrize("name", NATIVE)
def test_native_wan_note_names_every_file_and_its_folder(name):
    ui, api = _load(name)
    note = next(n for n in ui["nodes"] if n["type"] == "Note")["widgets_values"][0]
    folders = {"UNETLoader": "models/diffusion_models", "LoraLoaderModelOnly": "models/loras",
               "CLIPLoader": "models/text_encoders", "VAELoader": "models/vae", "CLIPVisionLoader": "models/clip_vision"}
    for node in api.values():
        for key in ("unet_name", "lora_name", "clip_name", "vae_name"):
            if key in node["inputs"]:
                assert node["inputs"][key] in note and folders[node["class_type"]] in note, node["inputs"][key]
    # The paper's 13.1x / 25.3 FPS are MimicMotion's: never promised for a 14B Wan.
    assert "13.1" not in note.replace("25.3 FPS / 13.1x were measured with a MimicMotion (SVD) teacher", "")


def test_readme_names_the_native_wan_files_and_promises_no_paper_speed_for_14b():
    readme = (ROOT / "README.md").read_text()
    for name in NATIVE:
        _, api = _load(name)
        for node in api.values():
            for key in ("unet_name", "lora_name", "clip_name", "vae_name"):
                if key in node["inputs"]:
                    assert node["inputs"][key] in readme, f"README does not say where {node['inputs'][key]} goes"
    for line in readme.splitlines():
        if "13.1" in line and "14B" in line:
            assert "MimicMotion" in line and "not" in line, line
