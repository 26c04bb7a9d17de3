"""Region loss of the distillation: LPIPS, the ONNX-in-torch ArcFace, face alignment and eq. 5."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iasa_core.pose import layout as L
from training.losses import (
    ARCFACE_TEMPLATE,
    LPIPS,
    ArcFaceEmbedder,
    LPIPSWeightsError,
    OnnxModule,
    RegionLoss,
    RegionLossConfig,
    align_faces,
    build_region_loss,
    flatten_video,
    similarity_to_template,
)

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# ---- LPIPS -----------------------------------------------------------------------------------

# Independent schedule of the reference trunks, written from the torchvision definitions:
# ("c", stride, pad) conv + relu, "p3"/"p2" max-pools, "t" read a tap.
_REF_SCHEDULE = {
    "alex": [("c", 4, 2), "t", "p3", ("c", 1, 2), "t", "p3", ("c", 1, 1), "t", ("c", 1, 1), "t", ("c", 1, 1), "t"],
    "vgg": [("c", 1, 1)] * 2 + ["t", "p2"] + [("c", 1, 1)] * 2 + ["t", "p2"] + [("c", 1, 1)] * 3 + ["t", "p2"]
    + [("c", 1, 1)] * 3 + ["t", "p2"] + [("c", 1, 1)] * 3 + ["t"],
}


def _reference_lpips(model: LPIPS, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS v0.1 written with functional ops only, reading the weights from the model."""
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)

    def taps(img: torch.Tensor) -> list[torch.Tensor]:
        h, out, ci = (img - shift) / scale, [], 0
        for step in _REF_SCHEDULE[model.net]:
            if step == "t":
                out.append(h)
            elif step == "p3":
                h = F.max_pool2d(h, 3, 2)
            elif step == "p2":
                h = F.max_pool2d(h, 2, 2)
            else:
                h = F.relu(F.conv2d(h, convs[ci].weight, convs[ci].bias, stride=step[1], padding=step[2]))
                ci += 1
        return out

    total = torch.zeros(x.shape[0])
    for fa, fb, lin in zip(taps(x), taps(y), model.lins, strict=True):
        na = fa / (torch.sqrt((fa**2).sum(1, keepdim=True)) + 1e-10)
        nb = fb / (torch.sqrt((fb**2).sum(1, keepdim=True)) + 1e-10)
        total = total + (((na - nb) ** 2) * lin.weight.view(1, -1, 1, 1)).sum(1).mean((1, 2))
    return total


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_plain_op_reference(net):
    model = LPIPS(net, seed=3)
    x = torch.rand(2, 3, 64, 72) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1)
    with torch.no_grad():
        got, want = model(x, y), _reference_lpips(model, x, y)
    assert got.shape == (2,)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    assert torch.all(got > 0)
    assert torch.equal(model(x, x), torch.zeros(2))


def test_lpips_seeded_and_frozen():
    a, b = LPIPS("alex", seed=1), LPIPS("alex", seed=1)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not any(p.requires_grad for p in a.parameters())
    assert all((lin.weight >= 0).all() for lin in a.lins)
    with pytest.raises(ValueError, match="never downloads"):
        LPIPS("alex", pretrained=True)


def _random_torchvision_trunk(net: str) -> dict[str, torch.Tensor]:
    template = LPIPS(net)
    state = {f"features.{i}.{k}": torch.randn_like(getattr(m, k)) * 0.05
             for i, m in enumerate(template.features) if isinstance(m, torch.nn.Conv2d) for k in ("weight", "bias")}
    state["classifier.1.weight"] = torch.randn(8, 4)  # torchvision files also carry the head
    return state


def _random_lins(net: str) -> dict[str, torch.Tensor]:
    chans = LPIPS(net).channels
    return {f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(chans)}


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_lpips_weight_files_round_trip(tmp_path, fmt):
    trunk, lins = _random_torchvision_trunk("alex"), _random_lins("alex")
    trunk_path, lin_path = tmp_path / f"alexnet.{fmt}", tmp_path / "alex.pth"
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(trunk, str(trunk_path))
    else:
        torch.save(trunk, trunk_path)
    torch.save(lins, lin_path)
    model = LPIPS.from_files("alex", trunk_path, lin_path)
    assert torch.equal(model.features[3].weight, trunk["features.3.weight"])
    assert torch.equal(model.features[10].bias, trunk["features.10.bias"])
    assert torch.equal(model.lins[4].weight, lins["lin4.model.1.weight"])
    x = torch.rand(1, 3, 48, 48) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model(x, -x), _reference_lpips(model, x, -x), atol=1e-6, rtol=0)


def test_lpips_bad_weight_files(tmp_path):
    trunk, lins = _random_torchvision_trunk("alex"), _random_lins("alex")
    good_trunk, good_lin = tmp_path / "trunk.pth", tmp_path / "lin.pth"
    torch.save(trunk, good_trunk)
    torch.save(lins, good_lin)
    missing = dict(trunk)
    del missing["features.10.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(LPIPSWeightsError, match=r"missing\.pth.*features\.10\.weight"):
        LPIPS.from_files("alex", tmp_path / "missing.pth", good_lin)
    # A VGG trunk offered as AlexNet: wrong shapes are named, nothing is loaded silently.
    torch.save(_random_torchvision_trunk("vgg"), tmp_path / "vgg.pth")
    with pytest.raises(LPIPSWeightsError, match=r"vgg\.pth"):
        LPIPS.from_files("alex", tmp_path / "vgg.pth", good_lin)
    torch.save({"lin0.model.1.weight": torch.rand(1, 64, 1, 1), "bogus": torch.zeros(1)}, tmp_path / "badlin.pth")
    with pytest.raises(LPIPSWeightsError, match=r"badlin\.pth.*lin1\.model\.1\.weight.*bogus"):
        LPIPS.from_files("alex", good_trunk, tmp_path / "badlin.pth")
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        LPIPS.from_files("alex", tmp_path / "nope.pth", good_lin)


# ---- ONNX interpreter ------------------------------------------------------------------------

def _init(rng: np.random.Generator, name: str, *shape: int, scale: float = 1.0, positive: bool = False):
    arr = rng.uniform(0.5, 1.5, shape) if positive else rng.normal(0.0, scale, shape)
    return numpy_helper.from_array(arr.astype(np.float32), name)


def _bn(rng, nodes, inits, x: str, out: str, c: int) -> None:
    names = [f"{out}_{k}" for k in ("scale", "bias", "mean", "var")]
    inits += [_init(rng, names[0], c, positive=True), _init(rng, names[1], c, scale=0.1),
              _init(rng, names[2], c, scale=0.1), _init(rng, names[3], c, positive=True)]
    nodes.append(helper.make_node("BatchNormalization", [x, *names], [out], epsilon=1e-5, name=out))


def _conv(rng, nodes, inits, x: str, out: str, cin: int, cout: int, k: int, stride: int, pads: list[int],
          bias: bool = False) -> None:
    ins = [x, f"{out}_w"]
    inits.append(_init(rng, f"{out}_w", cout, cin, k, k, scale=math.sqrt(2.0 / (cin * k * k))))
    if bias:
        inits.append(_init(rng, f"{out}_b", cout, scale=0.1))
        ins.append(f"{out}_b")
    nodes.append(helper.make_node("Conv", ins, [out], kernel_shape=[k, k], strides=[stride, stride], pads=pads,
                                  name=out))


def _prelu(rng, nodes, inits, x: str, out: str, c: int) -> None:
    inits.append(numpy_helper.from_array(rng.uniform(0.1, 0.3, (c, 1, 1)).astype(np.float32), f"{out}_slope"))
    nodes.append(helper.make_node("PRelu", [x, f"{out}_slope"], [out], name=out))


def iresnet_like(size: int = 112, width: int = 8, dim: int = 64, mxnet_input: bool = False,
                 seed: int = 0) -> onnx.ModelProto:
    """A tiny insightface-iresnet-shaped recognition graph (same op set as w600k_r50)."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    x = "data"
    if mxnet_input:
        # mxnet conversions normalise inside the graph; insightface detects them by node name.
        inits += [numpy_helper.from_array(np.array(127.5, np.float32), "mean"),
                  numpy_helper.from_array(np.array(1 / 127.5, np.float32), "istd")]
        nodes += [helper.make_node("Sub", ["data", "mean"], ["sub"], name="_minusscalar0"),
                  helper.make_node("Mul", ["sub", "istd"], ["mul"], name="_mulscalar0")]
        x = "mul"
    _conv(rng, nodes, inits, x, "stem", 3, width, 3, 2, [1, 1, 1, 1], bias=True)
    _bn(rng, nodes, inits, "stem", "stem_bn", width)
    _prelu(rng, nodes, inits, "stem_bn", "stem_act", width)
    # one IBasicBlock with a strided downsample branch
    _bn(rng, nodes, inits, "stem_act", "b_bn1", width)
    _conv(rng, nodes, inits, "b_bn1", "b_c1", width, width, 3, 1, [1, 1, 1, 1])
    _bn(rng, nodes, inits, "b_c1", "b_bn2", width)
    _prelu(rng, nodes, inits, "b_bn2", "b_act", width)
    _conv(rng, nodes, inits, "b_act", "b_c2", width, width, 3, 2, [1, 1, 1, 1])
    _bn(rng, nodes, inits, "b_c2", "b_bn3", width)
    _conv(rng, nodes, inits, "stem_act", "ds", width, width, 1, 2, [0, 0, 0, 0])
    _bn(rng, nodes, inits, "ds", "ds_bn", width)
    nodes.append(helper.make_node("Add", ["b_bn3", "ds_bn"], ["res"], name="add"))
    # asymmetric padding (as SAME-style exports produce)
    _conv(rng, nodes, inits, "res", "tail", width, width, 3, 2, [0, 0, 1, 1])
    _bn(rng, nodes, inits, "tail", "tail_bn", width)
    nodes.append(helper.make_node("Dropout", ["tail_bn"], ["drop"], name="dropout"))
    nodes.append(helper.make_node("Flatten", ["drop"], ["flat"], axis=1, name="flatten"))
    side = size // 8
    inits += [_init(rng, "fc_w", dim, width * side * side, scale=1 / math.sqrt(width * side * side)),
              _init(rng, "fc_b", dim, scale=0.1)]
    nodes.append(helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], transB=1, name="fc"))
    _bn(rng, nodes, inits, "fc", "fc_bn", dim)  # insightface's BatchNorm1d "features"
    graph = helper.make_graph(
        nodes, "iresnet_like",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("fc_bn", TensorProto.FLOAT, ["N", dim])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _misc_ops_model() -> onnx.ModelProto:
    """The other supported ops: shape arithmetic, MatMul, Transpose, Concat, Sigmoid, ..."""
    rng = np.random.default_rng(1)
    c = helper.make_node
    nodes = [
        c("Constant", [], ["two"], value=numpy_helper.from_array(np.array(2.0, np.float32))),
        c("Sigmoid", ["x"], ["s"]), c("Div", ["s", "two"], ["d"]), c("Sub", ["x", "d"], ["sub"]),
        c("Relu", ["sub"], ["r"]), c("Mul", ["r", "x"], ["m"]), c("GlobalAveragePool", ["m"], ["gap"]),
        c("Shape", ["x"], ["shp"]), c("Constant", [], ["zero"], value_int=0),
        c("Gather", ["shp", "zero"], ["n"], axis=0), c("Constant", [], ["ax0"], value_ints=[0]),
        c("Unsqueeze", ["n", "ax0"], ["n1"]), c("Constant", [], ["dims"], value_ints=[4, 36]),
        c("Concat", ["n1", "dims"], ["shape3"], axis=0), c("Reshape", ["m", "shape3"], ["r3"]),
        c("Transpose", ["r3"], ["t"], perm=[0, 2, 1]), c("MatMul", ["t", "w"], ["mm"]),
        c("Flatten", ["mm"], ["f"]), c("Identity", ["f"], ["ident"]),
        c("Flatten", ["gap"], ["gapf"]), c("Concat", ["ident", "gapf"], ["out"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "misc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 6, 6])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["N", 112]),
         helper.make_tensor_value_info("gap", TensorProto.FLOAT, ["N", 4, 1, 1])],
        [numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _ort(model: onnx.ModelProto, *inputs: np.ndarray) -> list[np.ndarray]:
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: v for i, v in zip(sess.get_inputs(), inputs, strict=True)})


def test_onnx_interpreter_matches_onnxruntime_on_iresnet_like():
    model = iresnet_like(size=112, dim=64)
    x = np.random.default_rng(2).uniform(-1, 1, (2, 3, 112, 112)).astype(np.float32)
    (want,) = _ort(model, x)
    net = OnnxModule(model, source="iresnet_like")
    inp = torch.from_numpy(x).requires_grad_(True)
    got = net(inp)
    assert got.shape == (2, 64)
    assert np.abs(got.detach().numpy() - want).max() < 1e-5
    got.pow(2).sum().backward()
    assert inp.grad is not None and inp.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in net.parameters())


def test_onnx_interpreter_misc_ops():
    model = _misc_ops_model()
    x = np.random.default_rng(3).normal(size=(3, 4, 6, 6)).astype(np.float32)
    want = _ort(model, x)
    got = OnnxModule(model)(torch.from_numpy(x))
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.abs(g.numpy() - w).max() < 1e-5


def test_onnx_unsupported_op_names_op_and_file(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    path = tmp_path / "softmax_model.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    with pytest.raises(NotImplementedError, match=r"Softmax.*softmax_model\.onnx"):
        OnnxModule.from_file(path)


# ---- ArcFace embedder and alignment ----------------------------------------------------------

@pytest.fixture(scope="module")
def arcface_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("arcface") / "tiny_arcface.onnx"
    onnx.save(iresnet_like(size=112, dim=32, seed=5), str(path))
    return path


def test_arcface_embedder_from_onnx(arcface_path, tmp_path):
    emb = ArcFaceEmbedder.from_onnx(arcface_path)
    assert emb.embedding_dim == 32 and emb.input_size == 112 and not emb.raw_pixels
    faces = torch.rand(2, 3, 112, 112) * 2 - 1
    got = emb(faces)
    torch.testing.assert_close(got.norm(dim=1), torch.ones(2))
    (ref,) = _ort(onnx.load(str(arcface_path)), faces.numpy())
    ref = ref / np.linalg.norm(ref, axis=1, keepdims=True)
    assert np.abs(got.detach().numpy() - ref).max() < 1e-5
    # mxnet-style graphs normalise internally and get 0..255 pixels, as insightface feeds them.
    mx_path = tmp_path / "mx.onnx"
    onnx.save(iresnet_like(size=112, dim=32, mxnet_input=True, seed=5), str(mx_path))
    mx = ArcFaceEmbedder.from_onnx(mx_path)
    assert mx.raw_pixels
    torch.testing.assert_close(mx(faces), got, atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx.*w600k_r50\.onnx"):
        ArcFaceEmbedder.from_onnx(tmp_path / "missing.onnx")


def _face_keypoints(points5: torch.Tensor, eye_radius: float = 3.0) -> torch.Tensor:
    """WholeBody (N, 133, 3) keypoints whose five ArcFace landmarks are points5 (N, 5, 2)."""
    n = points5.shape[0]
    kp = torch.zeros(n, 133, 3)
    kp[..., 2] = 1.0
    ang = torch.arange(6) * (2 * math.pi / 6)
    ring = torch.stack([ang.cos(), ang.sin()], -1) * eye_radius  # mean exactly 0
    kp[:, 23 + 36:23 + 42, :2] = points5[:, None, 0] + ring
    kp[:, 23 + 42:23 + 48, :2] = points5[:, None, 1] + ring
    kp[:, 23 + 30, :2] = points5[:, 2]
    kp[:, 23 + 48, :2] = points5[:, 3]
    kp[:, 23 + 54, :2] = points5[:, 4]
    return kp


def test_align_faces_maps_landmarks_onto_template():
    h, w, scale, rot = 180, 200, 1.7, math.radians(14.0)
    rmat = torch.tensor([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    src = (ARCFACE_TEMPLATE - 56.0) @ rmat.T * scale + torch.tensor([95.0, 88.0])
    # Five images, each with one dot at one landmark: a mirrored warp would put a dot elsewhere.
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    dots = torch.stack([torch.exp(-((xx - p[0]) ** 2 + (yy - p[1]) ** 2) / (2 * 2.5**2)) for p in src])
    images = dots[:, None].expand(5, 3, h, w)
    kps = _face_keypoints(src[None].expand(5, 5, 2))
    crops = align_faces(images, kps)
    assert crops.shape == (5, 3, 112, 112)
    cy, cx = torch.meshgrid(torch.arange(112).float(), torch.arange(112).float(), indexing="ij")
    for i in range(5):
        wgt = crops[i, 0]
        centroid = torch.stack([(wgt * cx).sum() / wgt.sum(), (wgt * cy).sum() / wgt.sum()])
        assert (centroid - ARCFACE_TEMPLATE[i]).norm() < 1.0, (i, centroid, ARCFACE_TEMPLATE[i])
    m, valid = similarity_to_template(src[None], ARCFACE_TEMPLATE)
    assert valid.all()
    mapped = src @ m[0, :, :2].T + m[0, :, 2]
    torch.testing.assert_close(mapped, ARCFACE_TEMPLATE, atol=1e-4, rtol=0)


def _umeyama_svd(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Umeyama (1991) similarity via SVD, the estimator skimage/insightface use: (2, 3) matrix."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    cov = (dst - mu_d).T @ (src - mu_s) / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(cov))])
    r = u @ d @ vt
    c = np.trace(np.diag(s) @ d) / ((src - mu_s) ** 2).sum(1).mean()
    return np.concatenate([c * r, (mu_d - c * r @ mu_s)[:, None]], 1)


def test_similarity_fit_equals_umeyama_and_warp_uses_pixel_centres():
    rng = np.random.default_rng(4)
    src = ARCFACE_TEMPLATE.numpy() * 1.3 + 20 + rng.normal(0, 2.0, (5, 2))  # noisy: no exact fit
    m, _ = similarity_to_template(torch.from_numpy(src)[None], ARCFACE_TEMPLATE)
    np.testing.assert_allclose(m[0].numpy(), _umeyama_svd(src, ARCFACE_TEMPLATE.numpy().astype(np.float64)),
                               atol=1e-5)
    # cv2.warpAffine semantics (pixel centres at integers), written out with numpy bilinear sampling
    img = rng.uniform(-1, 1, (1, 3, 200, 190)).astype(np.float32)
    kps = _face_keypoints(torch.from_numpy(src).float()[None])
    crop = align_faces(torch.from_numpy(img), kps)[0].numpy()
    minv = np.linalg.inv(np.vstack([m[0].numpy(), [0, 0, 1]]))
    for v, u in [(0, 0), (51, 38), (92, 70), (111, 111), (60, 20)]:
        px, py, _ = minv @ np.array([u, v, 1.0])
        x0, y0 = int(np.floor(px)), int(np.floor(py))
        fx, fy = px - x0, py - y0
        want = (img[0, :, y0, x0] * (1 - fx) * (1 - fy) + img[0, :, y0, x0 + 1] * fx * (1 - fy)
                + img[0, :, y0 + 1, x0] * (1 - fx) * fy + img[0, :, y0 + 1, x0 + 1] * fx * fy)
        np.testing.assert_allclose(crop[:, v, u], want, atol=2e-4)


# ---- region loss -----------------------------------------------------------------------------

H = W = 96
_BOXES = {  # (rows, cols) per region id; background elsewhere
    L.REGION_FACE: [(slice(8, 44), slice(30, 66))],
    L.REGION_HANDS: [(slice(62, 76), slice(4, 18)), (slice(62, 76), slice(78, 92))],
    L.REGION_ARMS: [(slice(46, 62), slice(8, 28)), (slice(46, 62), slice(68, 88))],
    L.REGION_BODY: [(slice(46, 94), slice(32, 64))],
}
_NAMES = {L.REGION_FACE: "face", L.REGION_HANDS: "hands", L.REGION_ARMS: "arms", L.REGION_BODY: "body"}


def _scene(n: int = 2):
    labels = torch.zeros(n, H, W, dtype=torch.long)
    for rid, boxes in _BOXES.items():
        for rows, cols in boxes:
            labels[:, rows, cols] = rid
    gen = torch.Generator().manual_seed(7)
    low = torch.rand(n, 3, 12, 12, generator=gen) * 2 - 1
    target = F.interpolate(low, size=(H, W), mode="bilinear", align_corners=False)
    # five face landmarks inside the face box (eyes, nose, mouth corners)
    pts = torch.tensor([[40.0, 20.0], [56.0, 20.0], [48.0, 28.0], [41.0, 36.0], [55.0, 36.0]])
    kps = _face_keypoints(pts[None].expand(n, 5, 2), eye_radius=2.0)
    noise = torch.randn(n, 3, H, W, generator=gen)
    return target, labels, kps, noise


@pytest.fixture(scope="module")
def lpips_model():
    return LPIPS("alex", seed=0)


@pytest.fixture(scope="module")
def loss_arcface(lpips_model, arcface_path):
    return RegionLoss(RegionLossConfig(crop_size=64), lpips_model, ArcFaceEmbedder.from_onnx(arcface_path))


def test_region_loss_zero_for_identical(loss_arcface):
    target, labels, kps, _ = _scene()
    total, parts = loss_arcface(target.clone(), target, labels, kps)
    assert total.item() == 0.0
    assert set(parts) == {"face", "hands", "arms", "body"} and all(v.item() == 0.0 for v in parts.values())


@pytest.mark.parametrize("rid", sorted(_NAMES))
def test_region_damage_grows_and_stays_in_its_term(loss_arcface, rid):
    target, labels, kps, noise = _scene()
    inside = (labels == rid).unsqueeze(1).float()
    values = []
    for strength in (0.05, 0.1, 0.2, 0.4, 0.8):
        total, parts = loss_arcface(target + strength * noise * inside, target, labels, kps)
        others = {k: v.item() for k, v in parts.items() if k != _NAMES[rid]}
        assert all(v == 0.0 for v in others.values()), others
        values.append(parts[_NAMES[rid]].item())
        weight = loss_arcface.config.weights()[_NAMES[rid]]
        torch.testing.assert_close(total, weight * parts[_NAMES[rid]])
    assert values[0] > 0
    assert all(b > a for a, b in zip(values, values[1:], strict=False)), values


def test_damage_outside_regions_is_free(loss_arcface):
    target, labels, kps, noise = _scene()
    background = (labels == L.BACKGROUND).unsqueeze(1).float()
    total, parts = loss_arcface(target + noise * background, target, labels, kps)
    assert total.item() == 0.0 and all(v.item() == 0.0 for v in parts.values())


def test_gradient_only_inside_masks(loss_arcface):
    target, labels, kps, noise = _scene()
    x = (target + 0.3 * noise).requires_grad_(True)
    total, _ = loss_arcface(x, target, labels, kps)
    total.backward()
    grad = x.grad.abs().sum(1)
    assert torch.isfinite(x.grad).all()
    assert grad[labels == L.BACKGROUND].max().item() == 0.0
    for rid in _NAMES:
        assert grad[labels == rid].sum() > 0, _NAMES[rid]


def test_absent_regions_contribute_zero_without_nan(loss_arcface):
    target, labels, kps, noise = _scene()
    labels[0][labels[0] == L.REGION_HANDS] = 0  # no hands in frame 0
    labels[1][:] = 0  # nothing at all in frame 1
    x = (target + 0.3 * noise).requires_grad_(True)
    total, parts = loss_arcface(x, target, labels, kps)
    total.backward()
    assert parts["hands"].item() == 0.0 and parts["face"].item() > 0
    assert torch.isfinite(x.grad).all() and x.grad[1].abs().max() == 0
    # every region absent: an exact, still differentiable, zero
    x2 = (target + 0.3 * noise).requires_grad_(True)
    total, parts = loss_arcface(x2, target, torch.zeros_like(labels), kps)
    total.backward()
    assert total.item() == 0.0 and torch.equal(x2.grad, torch.zeros_like(x2))
    # a face mask without usable landmarks (scores 0) gives no face term rather than garbage
    bad = kps.clone()
    bad[..., 2] = 0.0
    _, parts = loss_arcface(target + 0.3 * noise, target, _scene()[1], bad)
    assert parts["face"].item() == 0.0 and parts["hands"].item() > 0


def test_face_falls_back_to_lpips_without_arcface(lpips_model, caplog):
    target, labels, kps, noise = _scene()
    face = (labels == L.REGION_FACE).unsqueeze(1).float()
    with caplog.at_level(logging.WARNING):
        loss = RegionLoss(RegionLossConfig(crop_size=64), lpips_model, None)
    assert loss.face_metric == "lpips" and "falls back to LPIPS" in caplog.text
    _, parts = loss(target + 0.3 * noise * face, target, labels)  # no keypoints needed
    assert parts["face"].item() > 0 and parts["body"].item() == 0.0


def test_full_frame_mode_and_video_helper(lpips_model):
    target, labels, kps, noise = _scene(n=4)
    loss = RegionLoss(RegionLossConfig(crop_to_region=False, face=0.0), lpips_model)
    x = target + 0.3 * noise
    total, parts = loss(x, target, labels)
    assert total.item() > 0 and parts["face"].item() == 0.0
    # (B, 3, T, H, W) videos flatten frame by frame
    vid = lambda t: t.view(2, 2, *t.shape[1:]).transpose(1, 2)  # noqa: E731
    vx, vt = vid(x), vid(target)
    vl, vk = labels.view(2, 2, H, W), kps.view(2, 2, 133, 3)
    fx, ft, fl, fk = flatten_video(vx, vt, vl, vk)
    assert torch.equal(fx, x) and torch.equal(ft, target) and torch.equal(fl, labels) and torch.equal(fk, kps)
    total_v, _ = loss.forward_video(vx, vt, vl, vk)
    torch.testing.assert_close(total_v, total)
    total_s, _ = loss.forward_video(vx, vt, vl, vk, frame_stride=2)
    torch.testing.assert_close(total_s, loss(x[0::2], target[0::2], labels[0::2])[0])


def test_face_distance_choices_and_config_checks(lpips_model, loss_arcface):
    target, labels, kps, noise = _scene()
    x = target + 0.3 * noise
    cos_loss = RegionLoss(RegionLossConfig(crop_size=64, face_distance="cosine"), lpips_model, loss_arcface.arcface)
    l2 = loss_arcface(x, target, labels, kps)[1]["face"]
    cos = cos_loss(x, target, labels, kps)[1]["face"]
    torch.testing.assert_close(l2, 2 * cos)  # unit vectors: |e - e'|^2 = 2 (1 - cos)
    with pytest.raises(ValueError, match="keypoints"):
        loss_arcface(x, target, labels)
    with pytest.raises(ValueError, match=">= 0"):
        RegionLossConfig(hands=-1.0)
    with pytest.raises(ValueError, match="face_distance"):
        RegionLossConfig(face_distance="l1")


def test_build_region_loss_from_trainer_config(tmp_path, arcface_path):
    from types import SimpleNamespace

    torch.save(_random_torchvision_trunk("alex"), tmp_path / "trunk.pth")
    torch.save(_random_lins("alex"), tmp_path / "lin.pth")
    cfg = SimpleNamespace(weight=0.25, face=2.0, hands=1.0, arms=0.0, body=0.5, frames=4, lpips_net="alex",
                          lpips_backbone=str(tmp_path / "trunk.pth"), lpips_lin=str(tmp_path / "lin.pth"),
                          arcface=str(arcface_path))
    loss = build_region_loss(cfg)
    assert loss.face_metric == "arcface" and loss.config.weights() == {"face": 2.0, "hands": 1.0, "arms": 0.0,
                                                                      "body": 0.5}
    with pytest.raises(ValueError, match="both"):
        build_region_loss(SimpleNamespace(lpips_backbone=str(tmp_path / "trunk.pth"), lpips_lin=None))
