"""2-D cartoon characters drawn from COCO-WholeBody 133 keypoints: the ground-truth renderer.

Every visible part of the picture is placed by the keypoints, so a pose sequence fully decides
its video (given a :class:`CharacterStyle`):

* head: the face outline is the jaw contour (face points 0-16) closed by a skull arc over the two
  jaw ends, so an opening jaw lengthens the face; hair, ears, brows, eyes (sclera, iris clipped to
  the lids, so the eyes close with the eyelid points), nose and a mouth (outer lips, dark inner
  mouth, teeth) all come from the 68 face landmarks;
* neck from the shoulder midpoint to the face; torso polygon from the shoulders to the hips, or
  past the bottom of the canvas when the hips are not visible; trousers below visible hips;
* upper arms and forearms as capsules; hands as a palm (hull of wrist and finger bases) with five
  jointed fingers from the 21 hand points.

Draw order: background, back hair, neck, trousers, torso, arms, head, hands (the face is in front
of the torso, the hands in front of everything). Points with a score below ``MIN_SCORE`` are not
drawn, nor is anything that needs them. Shapes are filled with PIL on a canvas ``supersample``
times larger and box-filtered down, which anti-aliases edges while interiors keep their exact
style colours (tests and region statistics rely on that). The picture is a deterministic function
of (keypoints, style, size, supersample).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
from PIL import Image, ImageDraw

from iasa_core.pose import layout as L

MIN_SCORE = 0.3
DEFAULT_SUPERSAMPLE = 2  # edges land on half output pixels; 4 is smoother and ~2x slower

RGB = tuple[int, int, int]
SHIRT_STYLES = ("plain", "stripes", "collar")
NECKLINES = ("v", "round")
HAIR_STYLES = ("none", "short", "long", "bun", "puffy")
EYE_STYLES = ("iris", "dot")

_F = L.FACE[0]  # WholeBody index of iBUG face landmark 0
_SKIN_TONES = ((255, 224, 196), (241, 194, 155), (224, 172, 128), (198, 134, 92), (161, 102, 64),
               (120, 74, 46), (88, 56, 38), (250, 210, 180))
_HAIR_COLOURS = ((20, 16, 14), (60, 38, 24), (110, 70, 40), (170, 120, 60), (220, 190, 120),
                 (150, 60, 30), (200, 200, 205), (90, 40, 120), (30, 90, 160))
_IRIS_COLOURS = ((60, 40, 25), (30, 80, 140), (60, 110, 60), (40, 30, 30), (110, 90, 50))
_LIP_COLOURS = ((200, 90, 90), (170, 70, 80), (150, 80, 70), (220, 120, 130), (120, 60, 60))


def _clamp8(c) -> RGB:
    return tuple(int(min(255, max(0, round(v)))) for v in c)


def _shade(c: RGB, f: float) -> RGB:
    """Darker (f < 1) or lighter (f > 1, towards white) version of a colour."""
    if f <= 1.0:
        return _clamp8(np.asarray(c, np.float64) * f)
    return _clamp8(255 - (255 - np.asarray(c, np.float64)) / f)


def _hsv(h: float, s: float, v: float) -> RGB:
    i = int(h * 6.0) % 6
    f = h * 6.0 - math.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    rgb = ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i]
    return _clamp8(np.asarray(rgb) * 255)


def _dist(a: RGB, b: RGB) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


@dataclass(frozen=True)
class CharacterStyle:
    """Look of one character: colours, proportions and clothing (all JSON-serialisable)."""

    skin: RGB = (241, 194, 155)
    skin_shade: RGB = (214, 165, 128)      # ears, neck, nose: a darker skin tone
    hair: RGB = (60, 38, 24)
    hair_style: str = "short"
    shirt: RGB = (52, 98, 160)
    shirt_style: str = "plain"
    neckline: str = "v"
    accent: RGB = (235, 235, 235)           # stripes or collar
    stripe_period: float = 0.18             # stripe period, fraction of shoulder width
    sleeve: RGB = (42, 80, 134)
    long_sleeves: bool = True
    trousers: RGB = (50, 50, 60)
    background: RGB = (206, 214, 222)
    background_bottom: RGB = (206, 214, 222)  # equal to ``background`` for a flat one
    head_scale: float = 1.0                 # face outline scale about the jaw-line centre
    head_aspect: float = 0.7                # skull height over face width
    jaw_width: float = 1.0                  # widening of the jaw contour
    neck_width: float = 0.42                # fraction of face width
    limb_thickness: float = 0.2             # upper-arm diameter, fraction of shoulder width
    finger_thickness: float = 0.2           # finger diameter, fraction of palm length
    eye_size: float = 1.0                   # eye outline scale about its centre
    eye_style: str = "iris"
    iris: RGB = (60, 40, 25)
    lips: RGB = (200, 90, 90)
    mouth_inner: RGB = (90, 30, 35)
    teeth: bool = True
    brow_thickness: float = 0.05            # fraction of face width
    outline: float = 0.75                   # dark outline width in output pixels (0 = none)

    def __post_init__(self) -> None:
        for name, allowed in (("hair_style", HAIR_STYLES), ("shirt_style", SHIRT_STYLES),
                              ("neckline", NECKLINES), ("eye_style", EYE_STYLES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"CharacterStyle.{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, (tuple, list)):
                if len(v) != 3 or not all(isinstance(c, (int, np.integer)) and 0 <= c <= 255 for c in v):
                    raise ValueError(f"CharacterStyle.{f.name}: expected an RGB triple of 0..255 ints, got {v!r}")
                object.__setattr__(self, f.name, tuple(int(c) for c in v))
            elif isinstance(v, float) and not (math.isfinite(v) and v >= 0):
                raise ValueError(f"CharacterStyle.{f.name}: expected a finite number >= 0, got {v!r}")

    @classmethod
    def random(cls, rng: np.random.Generator) -> CharacterStyle:
        """A random, plausible-looking style; background, skin and shirt kept apart in colour."""
        skin = _clamp8(np.asarray(_SKIN_TONES[rng.integers(len(_SKIN_TONES))]) + rng.normal(0, 6, 3))
        hair = _clamp8(np.asarray(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))]) + rng.normal(0, 8, 3))
        # Rejection sampling keeps the figure separable from the background (a plain studio wall).
        for _ in range(100):
            shirt = _hsv(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.2, 0.95))
            bg = _hsv(rng.uniform(), rng.uniform(0.0, 0.45), rng.uniform(0.35, 0.97))
            if _dist(shirt, bg) > 90 and _dist(skin, bg) > 70 and _dist(shirt, skin) > 60 \
                    and _dist(hair, bg) > 50:
                break
        gradient = rng.uniform() < 0.5
        bg_bottom = _shade(bg, rng.uniform(0.75, 0.95)) if gradient else bg
        accent = _hsv(rng.uniform(), rng.uniform(0, 0.6), rng.uniform(0.6, 1.0)) if rng.uniform() < 0.6 \
            else _shade(shirt, rng.choice([0.55, 1.8]))
        sleeve = shirt if rng.uniform() < 0.6 else _shade(shirt, rng.uniform(0.75, 0.9))
        return cls(
            skin=skin, skin_shade=_shade(skin, rng.uniform(0.82, 0.9)), hair=hair,
            hair_style=str(rng.choice(HAIR_STYLES, p=[0.1, 0.35, 0.25, 0.12, 0.18])),
            shirt=shirt, shirt_style=str(rng.choice(SHIRT_STYLES, p=[0.45, 0.3, 0.25])),
            neckline=str(rng.choice(NECKLINES)), accent=accent,
            stripe_period=float(rng.uniform(0.12, 0.3)), sleeve=sleeve,
            long_sleeves=bool(rng.uniform() < 0.6),
            trousers=_hsv(rng.uniform(), rng.uniform(0, 0.5), rng.uniform(0.15, 0.6)),
            background=bg, background_bottom=bg_bottom,
            head_scale=float(rng.uniform(0.96, 1.12)), head_aspect=float(rng.uniform(0.6, 0.85)),
            jaw_width=float(rng.uniform(0.92, 1.1)), neck_width=float(rng.uniform(0.32, 0.5)),
            limb_thickness=float(rng.uniform(0.15, 0.26)), finger_thickness=float(rng.uniform(0.16, 0.24)),
            eye_size=float(rng.uniform(0.9, 1.4)), eye_style=str(rng.choice(EYE_STYLES, p=[0.7, 0.3])),
            iris=_clamp8(np.asarray(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]) + rng.normal(0, 6, 3)),
            lips=_clamp8(np.asarray(_LIP_COLOURS[rng.integers(len(_LIP_COLOURS))]) * 0.5
                         + np.asarray(skin) * 0.3 + rng.normal(0, 5, 3)),
            mouth_inner=_clamp8((rng.uniform(60, 110), rng.uniform(15, 40), rng.uniform(20, 45))),
            teeth=bool(rng.uniform() < 0.8), brow_thickness=float(rng.uniform(0.035, 0.07)),
            outline=float(rng.choice([0.0, 0.6, 0.9])),
        )

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (colours as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> CharacterStyle:
        """Inverse of :meth:`to_dict`; unknown keys are an error (a typo would change the look)."""
        names = {f.name for f in fields(cls)}
        extra = set(data) - names
        if extra:
            raise ValueError(f"CharacterStyle: unknown keys {sorted(extra)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# ---------------------------------------------------------------------- geometry helpers

_SEMI = np.linspace(-np.pi / 2, np.pi / 2, 7)   # half-circle for capsule ends
_CIRCLE = np.linspace(0, 2 * np.pi, 16, endpoint=False)


def _unit(v: np.ndarray, fallback=(1.0, 0.0)) -> np.ndarray:
    n = float(np.hypot(v[0], v[1]))
    return v / n if n > 1e-9 else np.asarray(fallback, np.float64)


def _capsule(a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
    """Polygon of a stadium (segment a-b thickened by r): (14, 2)."""
    d = _unit(b - a)
    ang = math.atan2(d[1], d[0])
    t1, t2 = _SEMI + ang, _SEMI + ang + np.pi
    end_b = b + r * np.stack([np.cos(t1), np.sin(t1)], -1)
    end_a = a + r * np.stack([np.cos(t2), np.sin(t2)], -1)
    return np.concatenate([end_b, end_a])


def _ellipse(c: np.ndarray, ax: np.ndarray, ay: np.ndarray, n: int = 24) -> np.ndarray:
    """Polygon of an ellipse with (possibly rotated) semi-axis vectors ax, ay."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return c + np.cos(t)[:, None] * ax + np.sin(t)[:, None] * ay


def _clip_halfplane(poly: np.ndarray, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Part of polygon ``poly`` where (x - p) . n >= 0 (one Sutherland-Hodgman step)."""
    # Plain Python: the polygons have a dozen points, where numpy's per-call overhead dominates.
    pts = poly.tolist()
    if not pts:
        return poly
    px, py, nx, ny = float(p[0]), float(p[1]), float(n[0]), float(n[1])
    d = [(x - px) * nx + (y - py) * ny for x, y in pts]
    out = []
    m = len(pts)
    for i in range(m):
        j = i + 1 if i + 1 < m else 0
        di, dj = d[i], d[j]
        if di >= 0:
            out.append(pts[i])
        if (di >= 0) != (dj >= 0):
            t = di / (di - dj)
            out.append([pts[i][0] + t * (pts[j][0] - pts[i][0]), pts[i][1] + t * (pts[j][1] - pts[i][1])])
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _clip_convex(poly: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection of any polygon with a convex polygon ``clip`` (either orientation)."""
    c = clip.tolist()
    m = len(c)
    area = sum(c[i][0] * c[(i + 1) % m][1] - c[(i + 1) % m][0] * c[i][1] for i in range(m))
    if abs(area) < 1e-9:
        return poly[:0]
    sign = 1.0 if area > 0 else -1.0
    for i in range(m):
        a, b = c[i], c[(i + 1) % m]
        # Inward normal: for a positively oriented (in image coords) polygon it is (-e_y, e_x).
        normal = np.array([-(b[1] - a[1]) * sign, (b[0] - a[0]) * sign])
        poly = _clip_halfplane(poly, np.array(a), normal)
        if len(poly) < 3:
            return poly[:0]
    return poly


def _hull(pts: np.ndarray) -> np.ndarray:
    """Convex hull (monotone chain, counter-clockwise on screen) of a few 2-D points."""
    pts = sorted(set(map(tuple, pts.tolist())))
    if len(pts) < 3:
        return np.array(pts, dtype=np.float64).reshape(-1, 2)

    def half(seq):
        out: list = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1], dtype=np.float64)


def _offset_convex(poly: np.ndarray, r: float) -> np.ndarray:
    """Convex polygon grown outwards by r (mitred corners, mitres capped at 2 r)."""
    n = len(poly)
    idx = np.arange(n)
    e = poly[(idx + 1) % n] - poly                  # edge i: vertex i -> i + 1
    e = e / np.maximum(np.hypot(e[:, 0], e[:, 1]), 1e-9)[:, None]
    normal = np.stack([e[:, 1], -e[:, 0]], -1)
    if ((poly - poly.mean(0)) * normal).sum() < 0:  # normals must point away from the inside
        normal = -normal
    bis = normal + normal[idx - 1]                  # vertex i joins edges i - 1 and i
    bis = bis / np.maximum(np.hypot(bis[:, 0], bis[:, 1]), 1e-9)[:, None]
    cos_half = np.maximum((bis * normal).sum(1), 0.5)[:, None]
    return poly + bis * (r / cos_half)


class _Canvas:
    """PIL drawing on the supersampled canvas with numpy polygons."""

    def __init__(self, img: Image.Image, ss: int) -> None:
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self.ss = ss

    def poly(self, pts: np.ndarray, colour: RGB) -> None:
        if len(pts) >= 3:
            self.draw.polygon([tuple(p) for p in pts.tolist()], fill=colour)

    def line(self, pts: np.ndarray, colour: RGB, width: float) -> None:
        w = max(1, int(round(width)))
        if len(pts) >= 2:
            self.draw.line([tuple(p) for p in pts.tolist()], fill=colour, width=w, joint="curve")

    def disc(self, c: np.ndarray, r: float, colour: RGB) -> None:
        self.draw.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colour)


# ---------------------------------------------------------------------- parts


def _background(style: CharacterStyle, hs: int, ws: int) -> Image.Image:
    top = np.asarray(style.background, np.float64)
    bottom = np.asarray(style.background_bottom, np.float64)
    y = np.linspace(0.0, 1.0, hs)[:, None]
    col = np.round(top * (1 - y) + bottom * y).astype(np.uint8)  # (hs, 3)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(col[:, None, :], (hs, ws, 3))), "RGB")


@dataclass
class _Frame:
    """Keypoints mapped onto the supersampled canvas, with visibility."""

    p: np.ndarray       # (133, 2) float64, supersampled pixel coordinates
    vis: np.ndarray     # (133,) bool
    hs: int
    ws: int
    ss: int

    def all(self, idx) -> bool:
        return bool(self.vis[list(idx)].all())


def _head_frame(f: _Frame, style: CharacterStyle):
    """Face frame from the jaw contour: centre of the jaw line, x/y unit axes, width; or None."""
    jaw = list(range(_F, _F + 17))
    if not f.all(jaw):
        return None
    p0, p16 = f.p[_F], f.p[_F + 16]
    x = _unit(p16 - p0)
    y = np.array([-x[1], x[0]])               # perpendicular, pointing to the chin
    c = (p0 + p16) / 2
    if (f.p[_F + 8] - c) @ y < 0:             # chin is the other way (upside-down input)
        y = -y
    w = float(np.linalg.norm(p16 - p0))
    if w < 1e-3:
        return None
    return c, x, y, w


def _face_outline(f: _Frame, style: CharacterStyle, c, x, y, w) -> np.ndarray:
    """Jaw contour (widened by ``jaw_width``) closed by the skull arc, scaled about the jaw line."""
    jaw = f.p[_F:_F + 17] - c
    u, v = jaw @ x, jaw @ y
    jaw = np.outer(u * style.jaw_width, x) + np.outer(v, y)
    a = w / 2 * style.jaw_width
    b = w * style.head_aspect
    t = np.linspace(0.0, np.pi, 15)[1:-1]     # right ear -> top -> left ear (ends are jaw points)
    skull = np.outer(a * np.cos(t), x) - np.outer(b * np.sin(t), y)
    return c + style.head_scale * np.concatenate([jaw, skull])


def _draw_back_hair(cv: _Canvas, style: CharacterStyle, c, x, y, w) -> None:
    s, a, b = style.head_scale, w / 2 * style.jaw_width, w * style.head_aspect
    if style.hair_style == "long":
        t = np.linspace(-0.1, np.pi + 0.1, 13)
        top = np.outer(1.12 * a * s * np.cos(t), x) - np.outer(1.1 * b * s * np.sin(t), y)
        sides = np.array([[-1.18 * a * s, 1.15 * w], [1.18 * a * s, 1.15 * w]])
        low = np.outer(sides[:, 0], x) + np.outer(sides[:, 1], y)
        cv.poly(c + np.concatenate([low[1:], top, low[:1]]), style.hair)
    elif style.hair_style == "puffy":
        cv.poly(_ellipse(c - 0.45 * b * s * y, 1.45 * a * s * x, 1.05 * b * s * y), style.hair)
    elif style.hair_style == "bun":
        r = 0.32 * w * s
        cv.disc(c - (b * s * 1.02 + 0.55 * r) * y, r, style.hair)


def _draw_front_hair(cv: _Canvas, style: CharacterStyle, c, x, y, w) -> None:
    if style.hair_style == "none":
        return
    s, a, b = style.head_scale, w / 2 * style.jaw_width, w * style.head_aspect
    # A crescent cap: the outer arc just outside the skull, the inner arc is the hairline.
    lo = -0.25 if style.hair_style != "puffy" else -0.05
    t = np.linspace(lo, np.pi - lo, 15)
    outer = np.outer(1.07 * a * s * np.cos(t), x) - np.outer(1.08 * b * s * np.sin(t), y)
    depth = 0.6 if style.hair_style in ("short", "long") else 0.72
    inner = np.outer(0.93 * a * s * np.cos(t[::-1]), x) - np.outer(depth * b * s * np.sin(t[::-1]), y)
    cv.poly(c + np.concatenate([outer, inner]), style.hair)


def _draw_eye(cv: _Canvas, f: _Frame, style: CharacterStyle, idx: range, w: float, dark: RGB) -> None:
    if not f.all(idx):
        return
    pts = f.p[list(idx)]
    centre = (pts[0] + pts[3]) / 2             # corners (iBUG 36/39 and 42/45)
    pts = centre + (pts - centre) * style.eye_size
    width = float(np.linalg.norm(pts[3] - pts[0]))
    line_w = max(0.025 * w, 0.5 * cv.ss)
    if style.eye_style == "iris":
        cv.poly(pts, (250, 250, 248))
        r = 0.26 * width
        iris = _clip_convex(centre + r * np.stack([np.cos(_CIRCLE), np.sin(_CIRCLE)], -1), pts)
        cv.poly(iris, style.iris)
        pupil = _clip_convex(centre + 0.45 * r * np.stack([np.cos(_CIRCLE), np.sin(_CIRCLE)], -1), pts)
        cv.poly(pupil, (15, 12, 12))
    else:
        cv.poly(pts, dark)
    cv.line(pts[[0, 1, 2, 3]], dark, line_w)   # upper lid: a closed eye stays a line


def _draw_mouth(cv: _Canvas, f: _Frame, style: CharacterStyle, y: np.ndarray, w: float) -> None:
    outer, inner = list(range(_F + 48, _F + 60)), list(range(_F + 60, _F + 68))
    if f.all(outer):
        cv.poly(f.p[outer], style.lips)
    if not f.all(inner):
        return
    ip = f.p[inner]
    cv.line(ip[[0, 1, 2, 3, 4]], _shade(style.lips, 0.55), max(0.03 * w, 0.6 * cv.ss))
    cv.poly(ip, style.mouth_inner)
    if style.teeth:
        # Upper teeth: the part of the inner mouth within a band under the upper lip.
        gap = float(max((ip[7] - ip[1]) @ y, (ip[6] - ip[2]) @ y, (ip[5] - ip[3]) @ y))
        if gap > 0.5 * cv.ss:
            top = min(float(ip[1] @ y), float(ip[2] @ y), float(ip[3] @ y))
            band = min(0.35 * gap, 0.07 * w)
            teeth = _clip_halfplane(ip, top * y + band * y, -y)
            cv.poly(teeth, (245, 245, 240))


def _draw_head(cv: _Canvas, f: _Frame, style: CharacterStyle, outline: float) -> None:
    hf = _head_frame(f, style)
    if hf is None:
        _draw_head_fallback(cv, f, style)
        return
    c, x, y, w = hf
    dark = _shade(style.skin, 0.35)
    # Ears at the jaw ends, behind the face.
    for k in (0, 16):
        e = c + style.head_scale * (f.p[_F + k] - c) * style.jaw_width - 0.05 * w * y
        cv.poly(_ellipse(e, 0.09 * w * x, 0.15 * w * y, 12), style.skin_shade)
    face = _face_outline(f, style, c, x, y, w)
    if outline > 0:
        cv.line(np.concatenate([face, face[:1]]), _shade(style.skin, 0.55), 2 * outline)
    cv.poly(face, style.skin)
    _draw_front_hair(cv, style, c, x, y, w)
    brow_w = style.brow_thickness * w
    for brow in (range(_F + 17, _F + 22), range(_F + 22, _F + 27)):
        if f.all(brow):
            cv.line(f.p[list(brow)], _shade(style.hair, 0.8), brow_w)
    _draw_eye(cv, f, style, range(_F + 36, _F + 42), w, dark)
    _draw_eye(cv, f, style, range(_F + 42, _F + 48), w, dark)
    nose = [_F + 28, _F + 31, _F + 32, _F + 33, _F + 34, _F + 35]
    if f.all(nose):
        cv.poly(f.p[nose], style.skin_shade)
    _draw_mouth(cv, f, style, y, w)


def _draw_head_fallback(cv: _Canvas, f: _Frame, style: CharacterStyle) -> None:
    """Body-only inputs (no face contour): a plain head disc around the visible head points."""
    idx = [i for i in (L.NOSE, L.L_EYE, L.R_EYE, L.L_EAR, L.R_EAR) if f.vis[i]]
    if len(idx) < 2:
        return
    pts = f.p[idx]
    c = pts.mean(0)
    r = max(float(np.linalg.norm(pts - c, axis=1).max()) * 1.4, 2.0 * cv.ss)
    cv.poly(_ellipse(c + 0.2 * r * np.array([0, 1.0]), np.array([r, 0.0]), np.array([0.0, 1.2 * r])),
            style.skin)


def _torso(f: _Frame, style: CharacterStyle):
    """Torso polygon, its down axis, shoulder width and neck point; None without both shoulders."""
    if not (f.vis[L.L_SHOULDER] and f.vis[L.R_SHOULDER]):
        return None
    ls, rs = f.p[L.L_SHOULDER], f.p[L.R_SHOULDER]
    sw = float(np.linalg.norm(ls - rs))
    if sw < 1e-3:
        return None
    out = _unit(ls - rs)                        # towards the subject's left (image right)
    down = np.array([-out[1], out[0]])
    neck = (ls + rs) / 2
    head = [i for i in (L.NOSE, L.L_EYE, L.R_EYE, _F + 30, _F + 27) if f.vis[i]]
    if head and (f.p[head].mean(0) - neck) @ down > 0:
        down = -down                             # the head is above the shoulders (not the chin: it drops)
    pad = 0.5 * style.limb_thickness * sw
    far = 2.0 * (f.hs + f.ws)                    # well past the canvas
    if f.vis[L.L_HIP] and f.vis[L.R_HIP]:
        lh, rh = f.p[L.L_HIP], f.p[L.R_HIP]
        lh, rh = lh + 0.1 * sw * out, rh - 0.1 * sw * out
    else:
        lh = ls + down * far + 0.05 * sw * out
        rh = rs + down * far - 0.05 * sw * out
    poly = np.array([
        rs - pad * out + 0.4 * pad * down, rs - 0.6 * pad * out - 0.6 * pad * down,
        neck - 0.25 * sw * out - 0.05 * sw * down, neck + 0.25 * sw * out - 0.05 * sw * down,
        ls + 0.6 * pad * out - 0.6 * pad * down, ls + pad * out + 0.4 * pad * down,
        lh, rh,
    ])
    return poly, down, out, sw, neck


def _draw_body(cv: _Canvas, f: _Frame, style: CharacterStyle, outline: float) -> None:
    t = _torso(f, style)
    hf = _head_frame(f, style)
    if t is None:
        return
    poly, down, out, sw, neck = t
    if hf is not None:
        c, x, y, w = hf
        top = c + 0.5 * w * y
        cv.poly(_capsule(neck + 0.1 * sw * down, top, 0.5 * style.neck_width * w), style.skin_shade)
        nw = style.neck_width * w
    else:
        nw = 0.2 * sw
    if f.vis[L.L_HIP] and f.vis[L.R_HIP]:
        far = 2.0 * (f.hs + f.ws)
        lh, rh = f.p[L.L_HIP], f.p[L.R_HIP]
        cv.poly(np.array([rh - 0.12 * sw * out, lh + 0.12 * sw * out, lh + far * down + 0.1 * sw * out,
                          rh + far * down - 0.1 * sw * out]), style.trousers)
    if outline > 0:
        cv.line(np.concatenate([poly, poly[:1]]), _shade(style.shirt, 0.5), 2 * outline)
    cv.poly(poly, style.shirt)
    if style.shirt_style == "stripes":
        period = style.stripe_period * sw
        start = neck + 0.15 * sw * down
        extent = float(max((q - start) @ down for q in poly))
        k = 0
        while k * period < extent and k < 200:
            a = start + k * period * down
            band = _clip_halfplane(_clip_halfplane(poly, a, down), a + 0.45 * period * down, -down)
            cv.poly(band, style.accent)
            k += 1
    # Neckline (the skin under the chin) and an optional collar.
    if style.shirt_style == "collar":
        for sgn in (-1.0, 1.0):
            cv.poly(np.array([neck + sgn * 0.5 * nw * out - 0.06 * sw * down,
                              neck + sgn * (0.5 * nw + 0.16 * sw) * out,
                              neck + sgn * 0.05 * sw * out + 0.2 * sw * down]), style.accent)
        cv.poly(np.array([neck - 0.4 * nw * out - 0.05 * sw * down, neck + 0.4 * nw * out - 0.05 * sw * down,
                          neck + 0.16 * sw * down]), style.skin_shade)
    elif style.neckline == "v":
        cv.poly(np.array([neck - 0.55 * nw * out - 0.06 * sw * down, neck + 0.55 * nw * out - 0.06 * sw * down,
                          neck + 0.22 * sw * down]), style.skin_shade)
    else:
        cv.poly(_ellipse(neck - 0.04 * sw * down, 0.6 * nw * out, 0.12 * sw * down, 16), style.skin_shade)


def _draw_arms(cv: _Canvas, f: _Frame, style: CharacterStyle, outline: float) -> None:
    t = _torso(f, style)
    if t is not None:
        sw = t[3]
    else:  # one shoulder only: size the limbs from the canvas
        sw = 0.35 * min(f.hs, f.ws)
    r_up = 0.5 * style.limb_thickness * sw
    r_fore = 0.85 * r_up
    fore_colour = style.sleeve if style.long_sleeves else style.skin
    for sho, elb, wri in ((L.R_SHOULDER, L.R_ELBOW, L.R_WRIST), (L.L_SHOULDER, L.L_ELBOW, L.L_WRIST)):
        segs = []
        if f.vis[sho] and f.vis[elb]:
            segs.append((f.p[sho], f.p[elb], r_up, style.sleeve))
        if f.vis[elb] and f.vis[wri]:
            segs.append((f.p[elb], f.p[wri], r_fore, fore_colour))
        if outline > 0:
            for a, b, r, colour in segs:
                cv.poly(_capsule(a, b, r + outline), _shade(colour, 0.5))
        for a, b, r, colour in segs[::-1]:       # upper arm over the forearm at the elbow
            cv.poly(_capsule(a, b, r), colour)


def _draw_hand(cv: _Canvas, f: _Frame, style: CharacterStyle, hand: tuple, outline: float) -> None:
    idx = np.array(hand)
    vis = f.vis[idx]
    p = f.p[idx]
    bases = [0, 1, 5, 9, 13, 17]
    if vis[0] and vis[9]:
        size = float(np.linalg.norm(p[9] - p[0]))
    else:
        pv = p[vis]
        size = 0.5 * float(np.linalg.norm(pv.max(0) - pv.min(0))) if len(pv) >= 2 else 0.0
    if size < 1e-3:
        return
    r = max(0.5 * style.finger_thickness * size, 0.45 * cv.ss)
    palm_idx = [i for i in bases if vis[i]]
    palm = _hull(p[palm_idx]) if len(palm_idx) >= 3 else None
    chains = []
    for k in range(5):
        chain = [1 + 4 * k + j for j in range(4)]   # knuckle to tip (the thumb from its CMC)
        run: list[int] = []
        for i in chain:                           # a finger is drawn up to its first unseen joint
            if not vis[i]:
                break
            run.append(i)
        if len(run) >= 2:
            chains.append(p[run])
    dark = _shade(style.skin, 0.55)
    if palm is not None and len(palm) >= 3:
        if outline > 0:
            cv.poly(_offset_convex(palm, r + outline), dark)
        cv.poly(_offset_convex(palm, r), style.skin)
    # Each finger gets its own outline, so fingers in front of the palm or of each other stay apart.
    for ch in chains[::-1]:
        if outline > 0:
            cv.line(ch, dark, 2 * (r + outline))
            cv.disc(ch[-1], r + outline, dark)
        cv.line(ch, style.skin, 2 * r)
        cv.disc(ch[-1], r, style.skin)


# ---------------------------------------------------------------------- public API


def _check(keypoints: np.ndarray, height: int, width: int, supersample: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"render: expected a positive height and width, got {height}x{width}")
    if int(supersample) < 1:
        raise ValueError(f"render: supersample must be >= 1, got {supersample}")
    if keypoints.shape[-2:] != (L.NUM_KEYPOINTS, 3):
        raise ValueError(f"render: expected keypoints of shape (..., {L.NUM_KEYPOINTS}, 3), got {keypoints.shape}")


def _render(kp: np.ndarray, style: CharacterStyle, bg: Image.Image, ss: int) -> np.ndarray:
    ws, hs = bg.size
    img = bg.copy()
    cv = _Canvas(img, ss)
    xy = np.asarray(kp[:, :2], np.float64)
    vis = (np.asarray(kp[:, 2]) >= MIN_SCORE) & np.isfinite(xy).all(1)
    # Pixel centres: output pixel i covers [i - 0.5, i + 0.5); supersampled pixel j sits at
    # (j + 0.5) / ss - 0.5 in output coordinates.
    p = np.where(vis[:, None], (np.nan_to_num(xy) + 0.5) * ss - 0.5, 0.0)
    f = _Frame(p, vis, hs, ws, ss)
    outline = style.outline * ss
    hf = _head_frame(f, style)
    if hf is not None:
        _draw_back_hair(cv, style, *hf)
    _draw_body(cv, f, style, outline)
    _draw_arms(cv, f, style, outline)
    _draw_head(cv, f, style, outline)
    _draw_hand(cv, f, style, L.RIGHT_HAND, outline)
    _draw_hand(cv, f, style, L.LEFT_HAND, outline)
    if ss > 1:
        img = img.reduce(ss)
    return np.asarray(img)


def render_character(keypoints: np.ndarray, style: CharacterStyle, height: int, width: int, *,
                     supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Draw the character posed by (133, 3) pixel keypoints on an H x W canvas: uint8 (H, W, 3)."""
    kp = np.asarray(keypoints, dtype=np.float64)
    _check(kp, height, width, supersample)
    ss = int(supersample)
    bg = _background(style, int(height) * ss, int(width) * ss)
    return _render(kp, style, bg, ss).copy()


def render_video(keypoints: np.ndarray, style: CharacterStyle, height: int, width: int, *,
                 supersample: int = DEFAULT_SUPERSAMPLE) -> np.ndarray:
    """Draw every frame of (T, 133, 3) keypoints: uint8 (T, H, W, 3), frame t = render_character(kp[t])."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3:
        raise ValueError(f"render_video: expected keypoints of shape (T, 133, 3), got {kp.shape}")
    _check(kp, height, width, supersample)
    ss = int(supersample)
    bg = _background(style, int(height) * ss, int(width) * ss)  # drawn once, copied per frame
    out = np.empty((len(kp), int(height), int(width), 3), np.uint8)
    for t in range(len(kp)):
        out[t] = _render(kp[t], style, bg, ss)
    return out
