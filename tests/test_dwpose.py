"""DWPose pipeline on tiny stand-in models with the real input/output signatures.

The stand-in detector returns a fixed raw YOLOX output (1, 8400, 85) holding known boxes at known
grid cells; the stand-in pose model returns SimCC logits that peak at known bins. Both exist as
ONNX (built with onnx.helper) and TorchScript (torch.jit.script) files, so the real loading,
letterbox, NMS, crop and decoding code runs on both runtimes.
"""

import argparse
import json
import logging
import math

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from iasa_core.detect import cli as pose_cli  # noqa: E402
from iasa_core.detect import dwpose as D  # noqa: E402
from iasa_core.detect import filter as F  # noqa: E402
from iasa_core.detect import wholebody as W  # noqa: E402
from iasa_core.detect import yolox as Y  # noqa: E402
from iasa_core.detect.runtime import OnnxRuntime, TorchScriptRuntime, load_runtime  # noqa: E402
from iasa_core.pose import layout as L  # noqa: E402
from iasa_core.pose.sequence import PoseSequence  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

# ---------------------------------------------------------------------- the scene
# A 1280x720 photo: letterbox ratio r = 0.5 (the network sees 640x360 at the top-left).
IMG_H, IMG_W = 720, 1280
RATIO = 0.5
# Person A: box centre (400, 360), 230.4 x 307.2 -> padded 1.25x = 288 x 384, exactly the crop
# size: crop pixel (u, v) is image (u + 256, v + 168), so keypoint = bin / 2 + (256, 168).
A_CENTRE, A_SIZE = (400.0, 360.0), (230.4, 307.2)
# Person B: smaller (half), nearer the image centre: keypoint = bin / 4 + (588, 284).
B_CENTRE, B_SIZE = (660.0, 380.0), (115.2, 153.6)

STRIDE_OFFSETS = {8: 0, 16: 80 * 80, 32: 80 * 80 + 40 * 40}


def _anchor(stride, gx, gy):
    return STRIDE_OFFSETS[stride] + gy * (640 // stride) + gx


def _put_box(raw, stride, centre_img, size_img, obj, cls_prob, cls=0):
    """Write a box (image pixels) at the grid cell holding its centre; return the anchor index."""
    cx, cy = centre_img[0] * RATIO, centre_img[1] * RATIO
    w, h = size_img[0] * RATIO, size_img[1] * RATIO
    gx, gy = int(cx // stride), int(cy // stride)
    i = _anchor(stride, gx, gy)
    raw[0, i, :4] = [cx / stride - gx, cy / stride - gy, math.log(w / stride), math.log(h / stride)]
    raw[0, i, 4] = obj
    raw[0, i, 5 + cls] = cls_prob
    return i


def _box(centre, size):
    return np.array([centre[0] - size[0] / 2, centre[1] - size[1] / 2,
                     centre[0] + size[0] / 2, centre[1] + size[1] / 2])


def detector_output(people=("A", "B"), extras=True):
    raw = np.zeros((1, 8400, 85), dtype=np.float32)
    raw[0, :, 2:4] = math.log(2.0)  # harmless tiny boxes with zero score everywhere else
    if "A" in people:
        _put_box(raw, 8, A_CENTRE, A_SIZE, 0.95, 0.95)
        if extras:  # a duplicate of A at stride 16, slightly different: NMS must remove it
            _put_box(raw, 16, (402.0, 357.0), (236.0, 300.0), 0.85, 0.9)
    if "B" in people:
        _put_box(raw, 32, B_CENTRE, B_SIZE, 0.9, 0.9)
    if extras:
        _put_box(raw, 8, (1100.0, 200.0), (100.0, 200.0), 0.4, 0.5)  # person score 0.2 < 0.3: dropped
        _put_box(raw, 8, (150.0, 600.0), (120.0, 80.0), 0.95, 0.95, cls=2)  # a car: dropped
    return raw


RNG = np.random.default_rng(7)
BINS_X = RNG.integers(0, 576, size=133)
BINS_Y = RNG.integers(0, 768, size=133)
PEAK_X = RNG.uniform(0.5, 1.2, size=133).astype(np.float32)
PEAK_Y = RNG.uniform(0.5, 1.2, size=133).astype(np.float32)
PEAK_X[7] = -0.25  # a point the model is not sure of at all (score <= 0)
PEAK_Y[7] = -0.5


def simcc_outputs():
    sx = np.full((1, 133, 576), -1.0, dtype=np.float32)
    sy = np.full((1, 133, 768), -1.0, dtype=np.float32)
    k = np.arange(133)
    sx[0, k, BINS_X] = PEAK_X
    sy[0, k, BINS_Y] = PEAK_Y
    return sx, sy


def expected_keypoints(person):
    """Known bins mapped back by hand for the two boxes chosen above."""
    bx, by = BINS_X.astype(np.float64), BINS_Y.astype(np.float64)
    score = np.minimum(PEAK_X, PEAK_Y)
    bad = score <= 0  # the reference puts such points at bin -1
    bx[bad], by[bad] = -1, -1
    if person == "A":
        x, y = bx / 2 + 256, by / 2 + 168
    else:
        x, y = bx / 4 + 588, by / 4 + 284
    return np.stack([x, y, score], axis=1)


# ---------------------------------------------------------------------- stand-in model files


def _onnx_constant_model(path, input_name, input_shape, outputs, batch_follows_input):
    """ONNX graph: out_i = const_i + 0 * mean(input) (shaped to follow the input's batch)."""
    inp = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)
    nodes, inits, outs = [], [numpy_helper.from_array(np.zeros((), np.float32), "zero")], []
    nodes.append(helper.make_node("ReduceMean", [input_name], ["m"], axes=[1, 2, 3], keepdims=1))
    nodes.append(helper.make_node("Mul", ["m", "zero"], ["m0"]))
    inits.append(numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "shape3"))
    nodes.append(helper.make_node("Reshape", ["m0", "shape3"], ["z"]))  # (N, 1, 1)
    for name, value in outputs.items():
        inits.append(numpy_helper.from_array(value, f"{name}_const"))
        nodes.append(helper.make_node("Add", [f"{name}_const", "z"], [name]))
        shape = [input_shape[0] if batch_follows_input else 1] + list(value.shape[1:])
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    graph = helper.make_graph(nodes, "standin", [inp], outs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


class _DetStandIn(torch.nn.Module):
    def __init__(self, out: np.ndarray):
        super().__init__()
        self.register_buffer("out", torch.from_numpy(out))
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 3 or x.shape[2] != 640 or x.shape[3] != 640:
            raise RuntimeError("expected (1, 3, 640, 640)")
        return self.out + x.mean() * self.w


class _PoseStandIn(torch.nn.Module):
    """Mimics the batch-5 TorchScript export: any other batch size fails."""

    def __init__(self, sx: np.ndarray, sy: np.ndarray):
        super().__init__()
        self.register_buffer("sx", torch.from_numpy(sx))
        self.register_buffer("sy", torch.from_numpy(sy))
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] != 5 or x.shape[1] != 3 or x.shape[2] != 384 or x.shape[3] != 288:
            raise RuntimeError("expected (5, 3, 384, 288)")
        z = x.mean(dim=(1, 2, 3)).reshape(-1, 1, 1) * self.w
        return self.sx + z, self.sy + z


def make_onnx_models(folder, det_raw=None):
    det_raw = detector_output() if det_raw is None else det_raw
    sx, sy = simcc_outputs()
    det = _onnx_constant_model(folder / D.DET_ONNX, "images", [1, 3, 640, 640], {"output": det_raw}, False)
    # dw-ll_ucoco_384.onnx takes one crop at a time (static batch 1)
    pose = _onnx_constant_model(folder / D.POSE_ONNX, "input", [1, 3, 384, 288],
                                {"simcc_x": sx, "simcc_y": sy}, True)
    return det, pose


def make_torchscript_models(folder, det_raw=None):
    det_raw = detector_output() if det_raw is None else det_raw
    sx, sy = simcc_outputs()
    det, pose = folder / D.DET_TORCHSCRIPT, folder / D.POSE_TORCHSCRIPT
    torch.jit.script(_DetStandIn(det_raw)).save(str(det))
    torch.jit.script(_PoseStandIn(sx, sy)).save(str(pose))
    return det, pose


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    onnx_dir = tmp_path_factory.mktemp("onnx")
    ts_dir = tmp_path_factory.mktemp("torchscript")
    return {"onnx": make_onnx_models(onnx_dir), "torchscript": make_torchscript_models(ts_dir),
            "onnx_dir": onnx_dir, "ts_dir": ts_dir}


def photo(h=IMG_H, w=IMG_W, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------- the whole pipeline


@pytest.mark.parametrize("kind", ["onnx", "torchscript"])
def test_pipeline_returns_the_known_keypoints_in_image_pixels(model_files, kind):
    det, pose = model_files[kind]
    dw = D.DWPoseDetector.from_files(det, pose, device="cpu")
    assert isinstance(dw.detector.runtime, OnnxRuntime if kind == "onnx" else TorchScriptRuntime)

    people = dw.detect_all(photo())
    assert len(people) == 2  # duplicate suppressed, low score and the car dropped
    assert people[0].score == pytest.approx(0.95 * 0.95, rel=1e-5)
    assert people[1].score == pytest.approx(0.81, rel=1e-5)
    np.testing.assert_allclose(people[0].box, _box(A_CENTRE, A_SIZE), atol=2e-3)
    np.testing.assert_allclose(people[1].box, _box(B_CENTRE, B_SIZE), atol=2e-3)
    # Exact up to float rounding: far below half a SimCC bin mapped back (0.25 px for A).
    np.testing.assert_allclose(people[0].keypoints, expected_keypoints("A"), atol=2e-3)
    np.testing.assert_allclose(people[1].keypoints, expected_keypoints("B"), atol=2e-3)

    kp = dw.detect(photo())  # largest
    np.testing.assert_allclose(kp, expected_keypoints("A"), atol=2e-3)
    kp = dw.detect(photo(), choose="central")
    np.testing.assert_allclose(kp, expected_keypoints("B"), atol=2e-3)
    assert kp.shape == (133, 3) and kp.dtype == np.float32


def test_both_runtimes_agree_and_video_tracks_one_person(model_files):
    frames = np.stack([photo(seed=s) for s in range(3)])
    a = D.DWPoseDetector.from_files(*model_files["onnx"])
    b = D.DWPoseDetector.from_files(*model_files["torchscript"], choose="central")
    calls = []
    va = a.detect_video(frames, progress=lambda i, n: calls.append((i, n)))
    vb = b.detect_video(frames)
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert va.shape == (3, 133, 3)
    np.testing.assert_allclose(va, np.broadcast_to(expected_keypoints("A"), va.shape), atol=2e-3)
    np.testing.assert_allclose(vb, np.broadcast_to(expected_keypoints("B"), vb.shape), atol=2e-3)
    seq = PoseSequence(va, IMG_H, IMG_W, fps=30)
    assert len(seq) == 3


def test_no_person_is_a_clear_error(tmp_path):
    det, pose = make_onnx_models(tmp_path, det_raw=detector_output(people=(), extras=True))
    dw = D.DWPoseDetector.from_files(det, pose)
    assert dw.detect_all(photo()) == []
    with pytest.raises(ValueError, match=r"no person found in me\.png; use a photo where one person's upper body"):
        dw.detect(photo(), name="me.png")
    with pytest.raises(ValueError, match="no person found in clip.mp4"):
        dw.detect_video(np.stack([photo(), photo()]), name="clip.mp4")


# ---------------------------------------------------------------------- detector pieces


def test_letterbox_top_left_pad_114_and_cv2_bilinear():
    img = photo()
    canvas, r = Y.letterbox(img)
    assert r == RATIO and canvas.shape == (640, 640, 3)
    assert (canvas[360:] == 114).all()
    # An exact 2x downscale with cv2.INTER_LINEAR is the rounded mean of each 2x2 block.
    q = img.astype(np.int64)
    mean4 = (q[0::2, 0::2] + q[0::2, 1::2] + q[1::2, 0::2] + q[1::2, 1::2] + 2) // 4
    assert np.array_equal(canvas[:360], mean4)
    # Half-pixel centres and edge clamping when enlarging (no anti-alias, no corner alignment).
    row = np.array([[[0], [200]]], dtype=np.uint8).repeat(3, axis=2)
    assert Y.resize_bilinear(row, 4, 1)[0, :, 0].tolist() == [0, 50, 150, 200]
    # A portrait photo: the ratio comes from the height; padding on the right.
    tall, r = Y.letterbox(photo(960, 480))
    assert r == pytest.approx(2 / 3) and (tall[:, 320:] == 114).all() and not (tall[:, :320] == 114).all()
    x, r = Y.preprocess(photo(333, 500))
    assert x.shape == (1, 3, 640, 640) and x.dtype == np.float32 and x.max() <= 255  # no normalisation


def test_nms_removes_duplicates_keeps_separate_boxes():
    boxes = np.array([[0, 0, 100, 100], [5, 5, 105, 105], [200, 200, 300, 300], [0, 0, 100, 50]], float)
    scores = np.array([0.9, 0.95, 0.8, 0.7])
    keep = Y.nms(boxes, scores, 0.45)
    assert keep.tolist() == [1, 2, 3]  # box 0 overlaps 1 (IoU 0.82), box 3 overlaps 1 by IoU 0.40 only
    assert Y.nms(boxes, scores, 0.3).tolist() == [1, 2]


def test_yolox_decoding_grid_and_strides():
    raw = np.zeros((1, 8400, 85), np.float32)
    i = _anchor(32, 19, 19)  # the last anchor of the stride-32 grid
    assert i == 8399
    raw[0, i, :4] = [0.5, 0.25, math.log(2.0), 0.0]
    dec = Y.decode_outputs(raw)
    np.testing.assert_allclose(dec[i, :4], [(19.5) * 32, (19.25) * 32, 64, 32])
    with pytest.raises(ValueError, match="expected"):
        Y.decode_outputs(np.zeros((1, 100, 85), np.float32))


# ---------------------------------------------------------------------- pose pieces


def test_affine_crop_puts_a_marked_pixel_where_the_map_says():
    img = np.zeros((IMG_H, IMG_W, 3), np.uint8)
    img[300, 500] = [255, 128, 10]
    box = np.array([[300.0, 150.0, 560.0, 620.0]])
    batch, centre, scale = W.preprocess(img, box)
    # Aspect fixed to 0.75 by widening: (260, 470) * 1.25 -> h 587.5, w 440.625.
    np.testing.assert_allclose(scale[0], [587.5 * 0.75, 587.5])
    m = W.crop_matrix(centre[0], scale[0])
    u, v = m @ np.array([500.0, 300.0, 1.0])
    crop_r = batch[0, 0] * W.STD[0] + W.MEAN[0]
    iy, ix = np.unravel_index(np.argmax(crop_r), crop_r.shape)
    assert abs(ix - u) <= 1 and abs(iy - v) <= 1
    # normalisation: black pixels become -mean/std per channel (RGB order)
    np.testing.assert_allclose(batch[0, :, 0, 0], -W.MEAN / W.STD, rtol=1e-6)
    # the decoder's inverse map undoes the crop map
    back = W.crop_to_image(np.array([[[u, v]]]), centre, scale)
    np.testing.assert_allclose(back[0, 0], [500.0, 300.0], atol=1e-6)


def test_simcc_decoding():
    sx, sy = simcc_outputs()
    locs, scores = W.decode_simcc(sx, sy)
    assert locs[0, 0].tolist() == [BINS_X[0] / 2, BINS_Y[0] / 2]
    assert scores[0, 3] == min(PEAK_X[3], PEAK_Y[3])
    assert locs[0, 7].tolist() == [-0.5, -0.5]  # score <= 0: location -1 as in the reference


def test_torchscript_fixed_batch_padding(tmp_path):
    """Seven persons through the batch-5 export: 5 + 5 (3 padded), cut back to 7."""
    _, pose = make_torchscript_models(tmp_path)
    rt = load_runtime(pose)
    assert isinstance(rt, TorchScriptRuntime) and rt.fixed_batch == 5
    outs = rt.run_batched(np.zeros((7, 3, 384, 288), np.float32))
    assert outs[0].shape == (7, 133, 576) and outs[1].shape == (7, 133, 768)
    with pytest.raises(ValueError, match="unknown model format"):
        load_runtime(tmp_path / "model.bin")


def test_cuda_request_without_cuda_falls_back_to_cpu_with_a_log(model_files, caplog):
    det, _ = model_files["onnx"]
    with caplog.at_level(logging.INFO, logger="iasa_core.detect.runtime"):
        rt = OnnxRuntime(det, device="cuda")
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert rt.providers[0] == "CUDAExecutionProvider"
    else:
        assert rt.providers == ["CPUExecutionProvider"] and rt.device == "cpu"
        assert "no CUDAExecutionProvider" in caplog.text
    assert "CPUExecutionProvider" in caplog.text or "CUDAExecutionProvider" in caplog.text
    assert rt.input_shape == (1, 3, 640, 640) and rt.fixed_batch == 1


# ---------------------------------------------------------------------- choosing a person


def test_choose_largest_ties_to_central_and_central():
    h, w = 100, 200
    big_off = [0, 0, 60, 60]
    small_mid = [90, 40, 110, 60]
    assert D.choose_person(np.array([small_mid, big_off]), h, w, "largest") == 1
    assert D.choose_person(np.array([small_mid, big_off]), h, w, "central") == 0
    same_mid = [70, 20, 130, 80]  # same area as big_off, centred
    assert D.choose_person(np.array([big_off, same_mid]), h, w, "largest") == 1
    with pytest.raises(ValueError, match="choose"):
        D.choose_person(np.array([big_off]), h, w, "tallest")


# ---------------------------------------------------------------------- training filter


def _good_pose():
    kp = np.zeros((133, 3), np.float32)
    kp[:, :2] = 100.0
    kp[:, 2] = 0.95
    kp[list(L.FEET), 2] = 0.0  # legs and feet do not matter
    kp[[11, 12, 13, 14, 15, 16], 2] = 0.1
    return kp


def test_training_filter_accepts_and_rejects_crafted_poses():
    good = _good_pose()
    assert F.passes_training_filter(good)
    q = F.pose_quality(good)
    assert q["passes"] and q["face_score"] == pytest.approx(0.95) and q["upper_body_visible_fraction"] == 1.0

    blurry_face = good.copy()
    blurry_face[list(L.FACE), 2] = 0.85
    weak_upper = good.copy()
    weak_upper[list(L.UPPER_BODY), 2] = 0.78
    one_wrist_missing = good.copy()
    one_wrist_missing[L.L_WRIST, 2] = 0.0  # 10/11 visible = 0.909 >= 0.9, mean 0.864 > 0.8: passes
    two_missing = one_wrist_missing.copy()
    two_missing[L.R_WRIST, 2] = 0.0  # 9/11 = 0.82 visible: fails
    assert not F.passes_training_filter(blurry_face)
    assert not F.passes_training_filter(weak_upper)
    assert F.passes_training_filter(one_wrist_missing)
    assert not F.passes_training_filter(two_missing)
    assert F.passes_training_filter(blurry_face, face_min=0.8)  # every constant is an argument

    seq = np.stack([good, blurry_face, weak_upper, one_wrist_missing, two_missing])
    assert F.training_filter(seq).tolist() == [True, False, False, True, False]
    with pytest.raises(ValueError, match="133"):
        F.training_filter(np.zeros((5, 17, 3)))


# ---------------------------------------------------------------------- finding weights, CLI


def test_find_files_in_folders_and_controlnet_aux_layout(tmp_path, model_files):
    nested = tmp_path / "ckpts" / "yzd-v" / "DWPose"
    nested.mkdir(parents=True)
    for name in (D.DET_ONNX, D.POSE_ONNX):
        (nested / name).write_bytes(b"x")
    det, pose = D.find_dwpose_files([tmp_path / "empty", tmp_path / "ckpts"])
    assert det == str(nested / D.DET_ONNX) and pose == str(nested / D.POSE_ONNX)
    det, pose = D.find_dwpose_files([model_files["ts_dir"]])
    assert det.endswith(D.DET_TORCHSCRIPT) and pose.endswith(D.POSE_TORCHSCRIPT)
    det, pose = D.find_dwpose_files([model_files["ts_dir"], model_files["onnx_dir"]], prefer="torchscript")
    assert det.endswith(D.DET_TORCHSCRIPT)


def test_missing_weights_message(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(D, "_from_hf_cache", lambda repo, name: None)
    with pytest.raises(FileNotFoundError) as err:
        D.find_dwpose_files([tmp_path / "models" / "dwpose"])
    msg = str(err.value)
    for needle in ("yolox_l.onnx", "dw-ll_ucoco_384.onnx", str(tmp_path / "models" / "dwpose"),
                   "yzd-v/DWPose", "Hugging Face cache", "hf download"):
        assert needle in msg
    # Shown inside ComfyUI too, where no command-line flag can be passed: only a caller's own hint names one.
    assert "--download" not in msg and "huggingface-cli" not in msg
    with pytest.raises(FileNotFoundError, match="pass --download"):
        D.find_dwpose_files([tmp_path / "models" / "dwpose"], download_hint="or pass --download")


def _pose_parser():
    p = argparse.ArgumentParser()
    pose_cli.add_parser(p.add_subparsers(dest="command"))
    return p


def test_cli_writes_pose_keypoint_json(tmp_path, model_files):
    from PIL import Image

    img_path, out = tmp_path / "me.png", tmp_path / "kp.json"
    Image.fromarray(photo()).save(img_path)
    args = _pose_parser().parse_args(["pose", "--image", str(img_path), "--out", str(out),
                                      "--models", str(tmp_path / "nothing"), "--models",
                                      str(model_files["onnx_dir"])])
    assert args.func(args) == 0
    frames = json.loads(out.read_text())
    assert len(frames) == 1 and frames[0]["canvas_width"] == IMG_W and frames[0]["canvas_height"] == IMG_H
    seq = PoseSequence.load_json(out)
    want = expected_keypoints("A")
    got = seq.keypoints[0]
    ok = want[:, 2] > 0
    np.testing.assert_allclose(got[ok], want[ok], atol=2e-3)


def test_cli_video_and_missing_weights(tmp_path, model_files, monkeypatch):
    av = pytest.importorskip("av")
    video, out = tmp_path / "clip.mp4", tmp_path / "kp.json"
    with av.open(str(video), "w") as c:
        s = c.add_stream("mpeg4", rate=12)
        s.width, s.height, s.pix_fmt = IMG_W, IMG_H, "yuv420p"
        for i in range(3):
            for pkt in s.encode(av.VideoFrame.from_ndarray(photo(seed=i), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    args = _pose_parser().parse_args(["pose", "--video", str(video), "--out", str(out),
                                      "--models", str(model_files["ts_dir"]), "--choose", "central"])
    assert args.func(args) == 0
    seq = PoseSequence.load_json(out)
    assert len(seq) == 3 and seq.fps == pytest.approx(12) and (seq.width, seq.height) == (IMG_W, IMG_H)
    want = expected_keypoints("B")
    ok = want[:, 2] > 0
    np.testing.assert_allclose(seq.keypoints[1][ok], want[ok], atol=2e-3)

    monkeypatch.setattr(D, "_from_hf_cache", lambda repo, name: None)
    args = _pose_parser().parse_args(["pose", "--video", str(video), "--out", str(out),
                                      "--models", str(tmp_path / "none")])
    with pytest.raises(FileNotFoundError, match="dw-ll_ucoco_384.onnx"):
        args.func(args)
