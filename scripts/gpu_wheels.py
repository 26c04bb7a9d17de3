#!/usr/bin/env python3
"""The wheels carried to the GPU machine: read the pinned list, check the files in .whl/, install them.

`python scripts/gpu_wheels.py` prints what the check would carry (sizes, hashes, what travels in all) and
exits non-zero on any problem; scripts/gpu_check.py uses the same functions before it installs.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "scripts" / "gpu_wheels.txt"
WHEEL_DIR = ROOT / ".whl"
MIB = 2**20
TRAVEL_LIMIT = 64 * MIB  # the device tool's cap on the working tree plus carried paths, per call
GPU_GLIBC_MINOR = 39  # the GPU image runs Ubuntu 24.04 (glibc 2.39): newer manylinux tags would not install
# pip's view of the GPU machine's interpreter, so the carried wheels can be test-installed from any Python here.
GPU_PIP_TARGET = ("--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                  "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                  "--platform", "manylinux2014_x86_64")


@dataclass(frozen=True)
class Pin:
    """One line of the requirements file: a distribution pinned to a version and the hashes of its wheel."""

    name: str
    version: str
    sha256: tuple[str, ...]


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel's file name (PEP 427)."""

    dist: str
    version: str
    python: str
    abi: str
    platform: str


def normalize(name: str) -> str:
    """A distribution name compared the way pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = REQUIREMENTS) -> list[Pin]:
    """The pinned wheels listed in ``path``: ``name==version --hash=sha256:HEX`` lines, # comments."""
    pins = []
    text = Path(path).read_text().replace("\\\n", " ")  # pip allows backslash-continued lines
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        spec, *options = line.split()
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)", spec)
        hashes = [o.split(":", 1)[1] for o in options if o.startswith("--hash=sha256:")]
        if not match or len(hashes) != len(options):
            raise ValueError(f"{path}:{number}: expected `name==version --hash=sha256:HEX`, got {raw.strip()!r}")
        pins.append(Pin(match[1], match[2], tuple(h.lower() for h in hashes)))
    names = [normalize(p.name) for p in pins]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: a package is listed twice; two versions of one package stop the install")
    return pins


def parse_wheel_name(filename: str) -> WheelName:
    """Split ``dist-version[-build]-python-abi-platform.whl``."""
    parts = filename.removesuffix(".whl").split("-")
    if not filename.endswith(".whl") or len(parts) not in (5, 6):
        raise ValueError(f"{filename!r} is not a wheel file name")
    return WheelName(parts[0], parts[1], parts[-3], parts[-2], parts[-1])


def _platform_fits(tag: str) -> bool:
    if tag == "any" or tag in ("manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"):
        return True
    match = re.fullmatch(r"manylinux_2_(\d+)_x86_64", tag)
    return bool(match) and int(match[1]) <= GPU_GLIBC_MINOR


def fits_gpu_python(wheel: WheelName) -> bool:
    """Whether pip on the GPU machine (CPython 3.12, x86-64 glibc Linux) accepts the wheel's tags."""
    def python_fits(tag: str) -> bool:
        if tag in ("py3", "py312", "cp312"):
            return True
        # A stable-ABI wheel built for an older CPython 3 also loads on 3.12.
        match = re.fullmatch(r"cp3(\d+)", tag)
        return bool(match) and "abi3" in wheel.abi.split(".") and int(match[1]) <= 12

    abi_ok = any(a in ("none", "abi3", "cp312") for a in wheel.abi.split("."))
    return (any(python_fits(t) for t in wheel.python.split(".")) and abi_ok
            and any(_platform_fits(t) for t in wheel.platform.split(".")))


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_wheels(pins: list[Pin], wheel_dir: Path = WHEEL_DIR) -> tuple[list[Path], list[str], list[Path]]:
    """(the wheel file of each pin, every problem found, files in ``wheel_dir`` that no pin names)."""
    files = sorted(Path(wheel_dir).glob("*.whl")) if Path(wheel_dir).is_dir() else []
    parsed = {}
    problems = []
    for f in files:
        try:
            parsed[f] = parse_wheel_name(f.name)
        except ValueError as exc:
            problems.append(str(exc))
    chosen = []
    for pin in pins:
        exact = [f for f, w in parsed.items()
                 if normalize(w.dist) == normalize(pin.name) and w.version.lower() == pin.version.lower()]
        where = f"{pin.name}=={pin.version}"
        if not exact:
            problems.append(f"{where}: no wheel in {wheel_dir} (fill it with scripts/fetch_gpu_wheels.sh)")
            continue
        if len(exact) > 1:
            problems.append(f"{where}: {len(exact)} wheels in {wheel_dir} ({', '.join(f.name for f in exact)}); keep one")
            continue
        wheel = exact[0]
        if pin.sha256 and sha256(wheel) not in pin.sha256:
            problems.append(f"{where}: {wheel.name} does not match the hash in the requirements file")
        if not fits_gpu_python(parsed[wheel]):
            problems.append(f"{where}: {wheel.name} does not install on CPython 3.12 x86-64 Linux")
        chosen.append(wheel)
    extras = [f for f in files if f not in chosen]
    return chosen, problems, extras


def travel_bytes(root: Path, carried: list[Path]) -> int | None:
    """Bytes a device call sends: git's tracked and untracked-not-ignored files plus ``carried``; None without git."""
    try:
        listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "-co", "--exclude-standard"],
                                capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None  # no git (as on the GPU machine's copy of the tree): nothing to measure against
    total = 0
    for name in filter(None, listed.decode(errors="replace").split("\0")):
        path = Path(root) / name
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total + sum(Path(f).stat().st_size for f in carried)


def install_command(wheels: list[Path], target: Path, python: str = sys.executable,
                    for_gpu_python: bool = False) -> list[str]:
    """pip's offline, dependency-free install of ``wheels`` into ``target`` (a folder for PYTHONPATH).

    ``for_gpu_python`` installs as if for the GPU machine's CPython 3.12, to test the carried files elsewhere.
    """
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--no-deps",
           "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(target)]
    if for_gpu_python:
        cmd += GPU_PIP_TARGET
    return cmd + [str(w) for w in wheels]


def report(requirements: Path = REQUIREMENTS, wheel_dir: Path = WHEEL_DIR, root: Path = ROOT) -> tuple[list[str], bool]:
    """Lines describing the carried wheels and whether everything is in order."""
    chosen, problems, extras = check_wheels(read_pins(requirements), wheel_dir)
    lines = [f"{f.name}: {f.stat().st_size / MIB:.1f} MiB" for f in chosen]
    lines += [f"not listed in {requirements.name}, not installed (delete it to travel lighter): {f.name}"
              for f in extras]
    carried = chosen + extras  # the whole folder travels when `carry` names it
    lines.append(f"wheels: {sum(f.stat().st_size for f in carried) / MIB:.1f} MiB in {len(carried)} file(s)")
    total = travel_bytes(root, carried)
    if total is not None:
        lines.append(f"a device call would send {total / MIB:.1f} MiB (limit {TRAVEL_LIMIT // MIB} MiB): the "
                     "working tree plus .whl/")
        if total > TRAVEL_LIMIT:
            problems.append(f"{total / MIB:.1f} MiB would travel, over the {TRAVEL_LIMIT // MIB} MiB limit")
    lines += [f"problem: {p}" for p in problems]
    return lines, not problems


def main(argv: list[str] | None = None) -> int:
    """Print the carried wheels' report; exit 1 on any problem."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requirements", type=Path, default=REQUIREMENTS)
    parser.add_argument("--wheels", type=Path, default=WHEEL_DIR, help="folder of wheels (default .whl/)")
    args = parser.parse_args(argv)
    lines, ok = report(args.requirements, args.wheels)
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
