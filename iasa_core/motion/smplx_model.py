"""SMPL-X forward kinematics from the user's own model file (numpy + torch, no `smplx` package).

The SMPL-X model file (``SMPLX_NEUTRAL_2020.npz`` from https://smpl-x.is.tue.mpg.de) is under the
MPI licence: it needs registration and may not be redistributed, so it is never shipped with this
pack. :func:`find_smplx_file` looks for it and says exactly where to put it.

Output joint numbering of :meth:`SmplxModel.forward` follows the public `smplx` package
(``SMPLX(use_face_contour=True)``: ``lbs`` joints, then ``VertexJointSelector``, then landmarks):

* 0-54: the 55 skeleton joints (pelvis ... right_thumb3; the order of the 165-d pose vector:
  0 global, 1-21 body, 22 jaw, 23/24 left/right eye, 25-39 left hand, 40-54 right hand; each
  hand: index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3);
* 55-59: vertices nose, right eye, left eye, right ear, left ear;
* 60-65: vertices left big toe, left small toe, left heel, right big toe, right small toe, right heel;
* 66-70 / 71-75: fingertip vertices thumb, index, middle, ring, pinky of the left / right hand;
* 76-126: the 51 static face landmarks (iBUG-68 points 17-67: brows, nose, eyes, mouth);
* 127-143: the 17 dynamic face-contour landmarks (iBUG-68 points 0-16), looked up from the neck's
  rotation about the vertical axis. Without the contour there are 127 joints.

The kinematics are computed exactly as linear blend skinning defines them, but only for the
vertices that the joint set needs (the extra vertex joints and the landmark triangles): joints are
regressed from the shaped template with a pre-multiplied regressor, which is the same linear map.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

DEFAULT_FILENAME = "SMPLX_NEUTRAL_2020.npz"
SMPLX_URL = "https://smpl-x.is.tue.mpg.de"
ENV_DIR = "IASA_SMPLX_DIR"

NUM_SKELETON_JOINTS = 55
# Parent of each of the 55 skeleton joints (the first row of kintree_table, root set to -1).
SMPLX_PARENTS = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)
NECK = 12
LEFT_HAND_JOINTS = tuple(range(25, 40))
RIGHT_HAND_JOINTS = tuple(range(40, 55))

# Mesh vertices used as extra joints 55-75 on the official 10475-vertex SMPL-X mesh (these
# indices are facts about the mesh topology; same order as the smplx package's vertex selector).
SMPLX_EXTRA_VERTEX_IDS = (
    9120, 9929, 9448, 616, 6,                 # nose, right eye, left eye, right ear, left ear
    5770, 5780, 8846, 8463, 8474, 8635,       # L big toe, L small toe, L heel, R big toe, R small toe, R heel
    5361, 4933, 5058, 5169, 5286,             # left thumb, index, middle, ring, pinky tips
    8079, 7669, 7794, 7905, 8022,             # right thumb, index, middle, ring, pinky tips
)
SMPLX_NUM_VERTICES = 10475

JOINT_NOSE, JOINT_R_EYE, JOINT_L_EYE, JOINT_R_EAR, JOINT_L_EAR = 55, 56, 57, 58, 59
FEET_JOINTS = tuple(range(60, 66))
LEFT_TIP_JOINTS = tuple(range(66, 71))
RIGHT_TIP_JOINTS = tuple(range(71, 76))
FACE_LANDMARK_START = 76     # 51 static landmarks: 76..126
NUM_FACE_LANDMARKS = 51
CONTOUR_START = 127          # 17 dynamic contour landmarks: 127..143
NUM_CONTOUR = 17
NUM_JOINTS_WITH_CONTOUR = 144
NUM_JOINTS_NO_CONTOUR = 127

# smplx: SHAPE_SPACE_DIM = 300, EXPRESSION_SPACE_DIM = 100; a file with fewer than 400 components
# (the 2019 SMPLX_*.npz files have 20) holds 10 shape then 10 expression components.
SHAPE_SPACE_DIM = 300
EXPRESSION_SPACE_DIM = 100

_REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_OPTIONAL_KEYS = ("lmk_faces_idx", "lmk_bary_coords", "dynamic_lmk_faces_idx", "dynamic_lmk_bary_coords",
                  "hands_meanl", "hands_meanr", "extra_vertex_ids")
_CHUNK = 512  # frames per chunk in forward (bounds memory for long clips)


# ---------------------------------------------------------------------------------- finding the file


def default_search_dirs() -> list[Path]:
    """Folders searched after the caller's: $IASA_SMPLX_DIR, ComfyUI/models/smplx, ~/.cache/iasa/smplx."""
    dirs: list[Path] = []
    env = os.environ.get(ENV_DIR)
    if env:
        dirs.append(Path(env).expanduser())
    here = Path(__file__).resolve()
    # <ComfyUI>/custom_nodes/<pack>/iasa_core/motion/smplx_model.py
    if len(here.parents) > 4 and here.parents[3].name == "custom_nodes":
        dirs.append(here.parents[4] / "models" / "smplx")
    dirs.append(Path.home() / ".cache" / "iasa" / "smplx")
    return dirs


def find_smplx_file(search_dirs: Iterable[str | os.PathLike] = (), filename: str = DEFAULT_FILENAME) -> Path:
    """Return the path of ``filename`` in the first folder that has it (also ``<folder>/smplx/``).

    ``search_dirs`` come first (the ComfyUI node passes ``ComfyUI/models/smplx``); an entry that
    is itself an existing file is returned as is. Raises FileNotFoundError naming the file, every
    folder searched, and where the file comes from.
    """
    searched: list[Path] = []
    for entry in [*(Path(d).expanduser() for d in search_dirs), *default_search_dirs()]:
        if entry.is_file():
            return entry
        for folder in (entry, entry / "smplx"):
            if folder in searched:
                continue
            searched.append(folder)
            candidate = folder / filename
            if candidate.is_file():
                return candidate
    listed = "\n".join(f"  - {p}" for p in searched) or "  (none)"
    raise FileNotFoundError(
        f"SMPL-X model file '{filename}' not found. Folders searched:\n{listed}\n"
        f"Get it from {SMPLX_URL} (free registration and acceptance of the MPI licence, which forbids "
        "redistribution, so this pack cannot ship it), then put it in ComfyUI/models/smplx/, or in "
        f"~/.cache/iasa/smplx/, or in a folder named by the environment variable ${ENV_DIR}.")


# ---------------------------------------------------------------------------------- rotations


def axis_angle_to_matrix(rotvec: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula: (..., 3) axis-angle -> (..., 3, 3), exact (series near zero angle)."""
    theta2 = (rotvec * rotvec).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    theta = torch.sqrt(theta2)
    small = theta < 1e-4
    safe = torch.where(small, torch.ones_like(theta), theta)
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(safe)) / (safe * safe))
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(rotvec.shape[:-1] + (3, 3))
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * (k @ k)


# ---------------------------------------------------------------------------------- the model


def _dense(arr, key: str) -> np.ndarray:
    """Unwrap a pickled 0-d object / scipy sparse value (only reachable with allow_pickle=True)."""
    if isinstance(arr, np.ndarray) and arr.dtype == object and arr.shape == ():
        arr = arr.item()
    if hasattr(arr, "toarray"):
        arr = arr.toarray()
    arr = np.asarray(arr)
    if arr.dtype == object:
        raise ValueError(f"SMPL-X key '{key}' holds Python objects, not numbers")
    return arr


class SmplxModel:
    """The arrays of an SMPL-X model needed for joints, with a vectorised forward pass."""

    def __init__(self, v_template, shapedirs, posedirs, J_regressor, weights, parents, faces,
                 lmk_faces_idx=None, lmk_bary_coords=None, dynamic_lmk_faces_idx=None,
                 dynamic_lmk_bary_coords=None, hands_mean_left=None, hands_mean_right=None,
                 extra_vertex_ids: Sequence[int] | None = None, num_shape: int | None = None,
                 num_expression: int | None = None, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else None
        where = f" in {self.path}" if self.path is not None else ""
        self.v_template = np.asarray(v_template, dtype=np.float64)
        if self.v_template.ndim != 2 or self.v_template.shape[1] != 3:
            raise ValueError(f"SMPL-X v_template{where}: expected (V, 3), got {self.v_template.shape}")
        V = self.v_template.shape[0]
        self.num_vertices = V

        sd = np.asarray(shapedirs)
        if sd.ndim == 2:
            sd = sd[:, :, None]
        if sd.ndim != 3 or sd.shape[:2] != (V, 3):
            raise ValueError(f"SMPL-X shapedirs{where}: expected (V={V}, 3, D), got {sd.shape}")
        D = sd.shape[2]
        if num_shape is None:
            # Same rule as the smplx package: 300 shape + up to 100 expression components when the
            # file has them (2020 files: 400), else 10 shape + 10 expression.
            if D >= SHAPE_SPACE_DIM + 1:
                num_shape = SHAPE_SPACE_DIM
            else:
                num_shape = min(10, D)
        if num_expression is None:
            num_expression = min(EXPRESSION_SPACE_DIM if num_shape == SHAPE_SPACE_DIM else 10, D - num_shape)
        if num_shape < 0 or num_expression < 0 or num_shape + num_expression > D:
            raise ValueError(f"SMPL-X shapedirs{where}: {D} components cannot hold {num_shape} shape "
                             f"+ {num_expression} expression components")
        self.num_shape = int(num_shape)
        self.num_expression = int(num_expression)
        # (V, 3, S + E): shape then expression directions.
        self.dirs = sd[:, :, : self.num_shape + self.num_expression]

        self.parents = np.asarray(parents, dtype=np.int64).reshape(-1).copy()
        self.parents[0] = -1
        J = self.parents.shape[0]
        self.num_joints = J
        if any(not (0 <= self.parents[i] < i) for i in range(1, J)):
            raise ValueError(f"SMPL-X kintree_table{where}: every joint's parent must come before it, "
                             f"got parents {self.parents.tolist()}")

        self.J_regressor = np.asarray(J_regressor, dtype=np.float64)
        if self.J_regressor.shape != (J, V):
            raise ValueError(f"SMPL-X J_regressor{where}: expected ({J}, {V}), got {self.J_regressor.shape}")
        self.weights = np.asarray(weights, dtype=np.float64)
        if self.weights.shape != (V, J):
            raise ValueError(f"SMPL-X weights{where}: expected ({V}, {J}), got {self.weights.shape}")
        pd = np.asarray(posedirs)
        if pd.ndim == 2 and pd.shape[0] == 9 * (J - 1) and pd.shape[1] == 3 * V:  # smplx's (P, V*3) layout
            pd = pd.T.reshape(V, 3, -1)
        if pd.shape != (V, 3, 9 * (J - 1)):
            raise ValueError(f"SMPL-X posedirs{where}: expected ({V}, 3, {9 * (J - 1)}), got {pd.shape}")
        self.posedirs = pd
        self.faces = np.asarray(faces, dtype=np.int64)
        if self.faces.ndim != 2 or self.faces.shape[1] != 3 or (self.faces.size and self.faces.max() >= V):
            raise ValueError(f"SMPL-X f{where}: expected (F, 3) vertex indices < {V}, got {self.faces.shape}")

        if extra_vertex_ids is None:
            if V != SMPLX_NUM_VERTICES:
                raise ValueError(f"SMPL-X model{where} has {V} vertices, not {SMPLX_NUM_VERTICES}: pass "
                                 "extra_vertex_ids (21 vertex indices for nose, eyes, ears, feet, fingertips)")
            extra_vertex_ids = SMPLX_EXTRA_VERTEX_IDS
        self.extra_vertex_ids = np.asarray(extra_vertex_ids, dtype=np.int64).reshape(-1)
        if self.extra_vertex_ids.size and (self.extra_vertex_ids.min() < 0 or self.extra_vertex_ids.max() >= V):
            raise ValueError(f"SMPL-X extra_vertex_ids{where}: expected indices in [0, {V}), got "
                             f"{self.extra_vertex_ids.tolist()}")

        def _lmk(idx, bary, name, lead):
            if idx is None or bary is None:
                return None, None
            idx = np.asarray(idx, dtype=np.int64)
            bary = np.asarray(bary, dtype=np.float64)
            if idx.shape != lead or bary.shape != lead + (3,) or (idx.size and idx.max() >= len(self.faces)):
                raise ValueError(f"SMPL-X {name}{where}: expected faces {lead} and barycentric {lead + (3,)}, "
                                 f"got {idx.shape} and {bary.shape}")
            return idx, bary

        n_lmk = None if lmk_faces_idx is None else np.asarray(lmk_faces_idx).reshape(-1).shape[0]
        self.lmk_faces_idx, self.lmk_bary_coords = _lmk(
            None if lmk_faces_idx is None else np.asarray(lmk_faces_idx).reshape(-1), lmk_bary_coords,
            "lmk_faces_idx/lmk_bary_coords", (n_lmk,))
        dyn_shape = None if dynamic_lmk_faces_idx is None else np.asarray(dynamic_lmk_faces_idx).shape
        if dyn_shape is not None and len(dyn_shape) != 2:
            raise ValueError(f"SMPL-X dynamic_lmk_faces_idx{where}: expected (angles, points), got {dyn_shape}")
        self.dynamic_lmk_faces_idx, self.dynamic_lmk_bary_coords = _lmk(
            dynamic_lmk_faces_idx, dynamic_lmk_bary_coords, "dynamic_lmk_faces_idx/dynamic_lmk_bary_coords",
            dyn_shape)

        self.pose_mean = np.zeros(3 * J, dtype=np.float64)
        self.has_hand_mean = False
        if hands_mean_left is not None and hands_mean_right is not None and J == NUM_SKELETON_JOINTS:
            hl = np.asarray(hands_mean_left, dtype=np.float64).reshape(-1)
            hr = np.asarray(hands_mean_right, dtype=np.float64).reshape(-1)
            if hl.shape == (45,) and hr.shape == (45,):
                self.pose_mean[3 * 25: 3 * 40] = hl
                self.pose_mean[3 * 40: 3 * 55] = hr
                self.has_hand_mean = True

        # Joints regressed from the shaped template = J_regressor @ (v_template + dirs . c): the
        # same linear map, pre-multiplied so that forward never touches all V vertices.
        self._J_template = self.J_regressor @ self.v_template                                 # (J, 3)
        self._J_dirs = np.einsum("jv,vcd->jcd", self.J_regressor, self.dirs, optimize=True)  # (J, 3, D)
        self._subset_cache: dict = {}

    # ------------------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | os.PathLike, allow_pickle: bool = False,
             extra_vertex_ids: Sequence[int] | None = None) -> SmplxModel:
        """Read an SMPL-X ``.npz`` (e.g. ``SMPLX_NEUTRAL_2020.npz``) with numpy.

        Only the known numeric keys are read. The official npz files also hold Python objects
        (e.g. dict-valued ``joint2num``/``part2num``) whose unpickling could run arbitrary code;
        an ``.npz`` is read lazily, key by key, so with ``allow_pickle=False`` those keys are
        simply never touched. Pass ``allow_pickle=True`` only for a file you trust if a needed key
        is itself stored as an object. ``.pkl`` model files are refused (pickle only).
        """
        path = Path(path)
        if path.suffix.lower() == ".pkl":
            raise ValueError(f"{path}: pickled SMPL-X models are not loaded (unpickling can run code); "
                             f"use the .npz file from the same download ({SMPLX_URL})")
        if not path.is_file():
            raise FileNotFoundError(f"SMPL-X model file '{path}' does not exist (get it from {SMPLX_URL}; "
                                    "it cannot be shipped with this pack)")
        data: dict[str, np.ndarray] = {}
        with np.load(path, allow_pickle=allow_pickle) as npz:
            missing = [k for k in _REQUIRED_KEYS if k not in npz.files]
            if missing:
                raise ValueError(f"{path}: not an SMPL-X model file, missing keys {missing} "
                                 f"(found {sorted(npz.files)[:12]})")
            for key in _REQUIRED_KEYS + _OPTIONAL_KEYS:
                if key not in npz.files:
                    continue
                try:
                    data[key] = _dense(npz[key], key)
                except ValueError as exc:
                    if key in _REQUIRED_KEYS:
                        raise ValueError(f"{path}: key '{key}' is stored as a pickled Python object ({exc}); "
                                         "re-save it as a plain array, or load a file you trust with "
                                         "allow_pickle=True") from exc
        if extra_vertex_ids is None and "extra_vertex_ids" in data:
            extra_vertex_ids = data["extra_vertex_ids"]
        return cls(
            v_template=data["v_template"], shapedirs=data["shapedirs"], posedirs=data["posedirs"],
            J_regressor=data["J_regressor"], weights=data["weights"],
            parents=np.asarray(data["kintree_table"]).astype(np.int64)[0], faces=data["f"],
            lmk_faces_idx=data.get("lmk_faces_idx"), lmk_bary_coords=data.get("lmk_bary_coords"),
            dynamic_lmk_faces_idx=data.get("dynamic_lmk_faces_idx"),
            dynamic_lmk_bary_coords=data.get("dynamic_lmk_bary_coords"),
            hands_mean_left=data.get("hands_meanl"), hands_mean_right=data.get("hands_meanr"),
            extra_vertex_ids=extra_vertex_ids, path=path)

    # ------------------------------------------------------------------------------ forward

    @property
    def has_contour(self) -> bool:
        return self.dynamic_lmk_faces_idx is not None and self.num_joints == NUM_SKELETON_JOINTS

    def num_output_joints(self, use_face_contour: bool = True) -> int:
        n = self.num_joints + len(self.extra_vertex_ids)
        if self.lmk_faces_idx is not None:
            n += len(self.lmk_faces_idx)
        if use_face_contour and self.has_contour:
            n += self.dynamic_lmk_faces_idx.shape[1]
        return n

    def forward(self, poses, expression=None, trans=None, betas=None, *, flat_hand_mean: bool = False,
                use_face_contour: bool = True):
        """Joints (T, N, 3) for T frames of SMPL-X parameters (numpy in -> numpy out, torch -> torch).

        ``poses``: (T, 3*J) or (T, J, 3) axis-angle (J = 55: the EMAGE/BEAT2 165-d layout);
        ``expression``: (T, E) or None; ``trans``: (T, 3) or None; ``betas``: (S,), (1, S) or (T, S)
        or None. Coefficients beyond the file's components are ignored, missing ones are zero.
        ``flat_hand_mean=False`` adds the file's mean hand pose as the smplx package does by default
        (and as EMAGE's renderer does); True treats zero hand pose as a flat hand.
        N = 55 + 21 + 51 + 17 = 144 with the contour, 127 without (see the module docstring).
        """
        as_numpy = not isinstance(poses, torch.Tensor)
        device = poses.device if isinstance(poses, torch.Tensor) else torch.device("cpu")
        p = torch.as_tensor(poses)
        dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
        J = self.num_joints
        if p.ndim == 3 and p.shape[1:] == (J, 3):
            p = p.reshape(p.shape[0], 3 * J)
        if p.ndim != 2 or p.shape[1] != 3 * J:
            raise ValueError(f"SMPL-X poses: expected (T, {3 * J}) axis-angle, got {tuple(p.shape)}")
        T = p.shape[0]
        p = p.to(device=device, dtype=dtype)
        if not flat_hand_mean and self.has_hand_mean:
            p = p + torch.as_tensor(self.pose_mean, dtype=dtype, device=device)

        coeffs = torch.zeros(T, self.num_shape + self.num_expression, dtype=dtype, device=device)
        if betas is not None:
            b = torch.as_tensor(betas).to(device=device, dtype=dtype)
            b = b.reshape(1, -1) if b.ndim == 1 else b
            if b.ndim != 2 or b.shape[0] not in (1, T):
                raise ValueError(f"SMPL-X betas: expected (S,), (1, S) or ({T}, S), got {tuple(b.shape)}")
            n = min(b.shape[1], self.num_shape)
            coeffs[:, :n] = b[:, :n]
        if expression is not None:
            e = torch.as_tensor(expression).to(device=device, dtype=dtype)
            if e.ndim != 2 or e.shape[0] != T:
                raise ValueError(f"SMPL-X expression: expected ({T}, E), got {tuple(e.shape)}")
            n = min(e.shape[1], self.num_expression)
            coeffs[:, self.num_shape: self.num_shape + n] = e[:, :n]
        tr = None
        if trans is not None:
            tr = torch.as_tensor(trans).to(device=device, dtype=dtype)
            if tr.shape != (T, 3):
                raise ValueError(f"SMPL-X trans: expected ({T}, 3), got {tuple(tr.shape)}")

        contour = use_face_contour and self.has_contour
        out = [self._forward_chunk(p[s: s + _CHUNK], coeffs[s: s + _CHUNK], contour, dtype, device)
               for s in range(0, T, _CHUNK)] if T else []
        joints = torch.cat(out, 0) if out else torch.zeros(0, self.num_output_joints(contour), 3, dtype=dtype)
        if tr is not None:
            joints = joints + tr[:, None, :]
        return joints.cpu().numpy() if as_numpy else joints

    __call__ = forward

    def vertices(self, poses, expression=None, trans=None, betas=None, *, flat_hand_mean: bool = False):
        """All posed mesh vertices (T, V, 3) by plain, full LBS (reference path; memory ~ T*V)."""
        as_numpy = not isinstance(poses, torch.Tensor)
        p = torch.as_tensor(poses)
        dtype = torch.float64 if p.dtype == torch.float64 else torch.float32
        p = p.reshape(p.shape[0], -1).to(dtype)
        T = p.shape[0]
        if not flat_hand_mean and self.has_hand_mean:
            p = p + torch.as_tensor(self.pose_mean, dtype=dtype)
        coeffs = torch.zeros(T, self.num_shape + self.num_expression, dtype=dtype)
        if betas is not None:
            b = torch.as_tensor(betas).to(dtype)
            b = b.reshape(1, -1) if b.ndim == 1 else b
            n = min(b.shape[1], self.num_shape)
            coeffs[:, :n] = b[:, :n]
        if expression is not None:
            e = torch.as_tensor(expression).to(dtype)
            n = min(e.shape[1], self.num_expression)
            coeffs[:, self.num_shape: self.num_shape + n] = e[:, :n]
        vt = torch.as_tensor(self.v_template, dtype=dtype)
        dirs = torch.as_tensor(np.asarray(self.dirs), dtype=dtype)
        v_shaped = vt + torch.einsum("td,vcd->tvc", coeffs, dirs)
        J_rest = torch.einsum("jv,tvc->tjc", torch.as_tensor(self.J_regressor, dtype=dtype), v_shaped)
        R = axis_angle_to_matrix(p.reshape(T, self.num_joints, 3))
        G_rot, G_t = self._chain(R, J_rest)
        feat = (R[:, 1:] - torch.eye(3, dtype=dtype)).reshape(T, -1)
        v_posed = v_shaped + torch.einsum("tp,vcp->tvc", feat, torch.as_tensor(np.asarray(self.posedirs), dtype=dtype))
        W = torch.as_tensor(self.weights, dtype=dtype)
        A_rot, A_t = G_rot, G_t - (G_rot @ J_rest[..., None])[..., 0]
        M_rot = torch.einsum("vj,tjab->tvab", W, A_rot)
        M_t = torch.einsum("vj,tja->tva", W, A_t)
        verts = (M_rot @ v_posed[..., None])[..., 0] + M_t
        if trans is not None:
            verts = verts + torch.as_tensor(trans).to(dtype)[:, None, :]
        return verts.numpy() if as_numpy else verts

    # ------------------------------------------------------------------------------ internals

    def _chain(self, R: torch.Tensor, J_rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global rotations (T, J, 3, 3) and positions (T, J, 3) along the kinematic tree."""
        rots = [R[:, 0]]
        pos = [J_rest[:, 0]]
        for j in range(1, self.num_joints):
            par = int(self.parents[j])
            rots.append(rots[par] @ R[:, j])
            pos.append(pos[par] + (rots[par] @ (J_rest[:, j] - J_rest[:, par])[..., None])[..., 0])
        return torch.stack(rots, 1), torch.stack(pos, 1)

    def _subset(self, contour: bool, dtype: torch.dtype, device: torch.device) -> dict:
        """Model arrays restricted to the vertices that the joint set reads (cached)."""
        key = (contour, dtype, str(device))
        if key in self._subset_cache:
            return self._subset_cache[key]
        need = [self.extra_vertex_ids]
        if self.lmk_faces_idx is not None:
            need.append(self.faces[self.lmk_faces_idx].reshape(-1))
        if contour:
            need.append(self.faces[self.dynamic_lmk_faces_idx].reshape(-1))
        ids = np.unique(np.concatenate(need)) if need else np.zeros(0, np.int64)
        pos = np.full(self.num_vertices, -1, dtype=np.int64)
        pos[ids] = np.arange(len(ids))

        def t(a, dt=dtype):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)

        sub = {
            "vt": t(self.v_template[ids]),
            "dirs": t(np.asarray(self.dirs)[ids]),
            "posedirs": t(np.asarray(self.posedirs)[ids]),
            "W": t(self.weights[ids]),
            "J_template": t(self._J_template),
            "J_dirs": t(self._J_dirs),
            "extra": t(pos[self.extra_vertex_ids], torch.long),
        }
        if self.lmk_faces_idx is not None:
            sub["lmk_v"] = t(pos[self.faces[self.lmk_faces_idx]], torch.long)        # (L, 3)
            sub["lmk_b"] = t(self.lmk_bary_coords)                                     # (L, 3)
        if contour:
            sub["dyn_v"] = t(pos[self.faces[self.dynamic_lmk_faces_idx]], torch.long)  # (A, C, 3)
            sub["dyn_b"] = t(self.dynamic_lmk_bary_coords)                             # (A, C, 3)
        self._subset_cache[key] = sub
        return sub

    def _forward_chunk(self, p, coeffs, contour, dtype, device) -> torch.Tensor:
        T, J = p.shape[0], self.num_joints
        sub = self._subset(contour, dtype, device)
        J_rest = sub["J_template"] + torch.einsum("td,jcd->tjc", coeffs, sub["J_dirs"])
        R = axis_angle_to_matrix(p.reshape(T, J, 3))
        G_rot, G_t = self._chain(R, J_rest)
        parts = [G_t]
        if sub["vt"].shape[0]:
            eye = torch.eye(3, dtype=dtype, device=device)
            feat = (R[:, 1:] - eye).reshape(T, -1)
            v_posed = (sub["vt"] + torch.einsum("td,vcd->tvc", coeffs, sub["dirs"])
                       + torch.einsum("tp,vcp->tvc", feat, sub["posedirs"]))
            A_t = G_t - (G_rot @ J_rest[..., None])[..., 0]
            M_rot = torch.einsum("vj,tjab->tvab", sub["W"], G_rot)
            M_t = torch.einsum("vj,tja->tva", sub["W"], A_t)
            verts = (M_rot @ v_posed[..., None])[..., 0] + M_t        # (T, S, 3) posed subset
            parts.append(verts[:, sub["extra"]])
            if "lmk_v" in sub:
                tri = verts[:, sub["lmk_v"]]                           # (T, L, 3 corners, 3)
                parts.append(torch.einsum("tlkc,lk->tlc", tri, sub["lmk_b"]))
            if contour:
                row = _contour_rows(G_rot[:, NECK], sub["dyn_v"].shape[0])
                tri_v = sub["dyn_v"][row]                              # (T, C, 3)
                bary = sub["dyn_b"][row]                               # (T, C, 3)
                tri = torch.gather(verts, 1, tri_v.reshape(T, -1, 1).expand(-1, -1, 3)).reshape(T, -1, 3, 3)
                parts.append(torch.einsum("tlkc,tlk->tlc", tri, bary))
        return torch.cat(parts, 1)


def _contour_rows(neck_rot: torch.Tensor, num_rows: int) -> torch.Tensor:
    """Row of the dynamic-contour look-up table for each frame, from the neck's global rotation.

    The table (79 rows in SMPL-X files) is indexed by the head's yaw in whole degrees: row a for
    a yaw of -a degrees (a = 0..39, clamped at 39), row 39 + a for a yaw of +a (a = 1..39), and
    row 78 beyond that. The yaw is the Euler angle about the vertical axis, asin(-R[2, 0]).
    """
    r = neck_rot
    yaw = torch.atan2(-r[:, 2, 0], torch.sqrt(r[:, 0, 0] ** 2 + r[:, 1, 0] ** 2))
    a = torch.round(torch.clamp(-yaw * 180.0 / np.pi, max=39.0)).long()
    row = torch.where(a < 0, torch.where(a < -39, torch.full_like(a, 78), 39 - a), a)
    return row.clamp(0, num_rows - 1)
