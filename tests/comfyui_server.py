"""Start and stop a real ComfyUI server for integration tests (standard library only).

    server = ComfyServer(comfyui_path, python=..., workdir=tmp_path)
    server.start()            # links the pack into custom_nodes, waits until HTTP answers
    ...                       # server.url, server.address, server.input_dir, server.output_dir
    server.stop()             # always: terminates the process group, unlinks what it linked

Used by tests/test_comfyui_integration.py; not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_LINK_NAME = "comfyui-iasa"
# a loopback server must never be reached through a proxy from the environment
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url: str, payload=None, timeout: float = 30.0):
    """GET (payload None) or POST JSON; returns the decoded answer. HTTPError carries the body."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with _OPENER.open(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body.strip() else None


def link_pack(comfyui_path: Path, pack_root: Path = REPO_ROOT) -> tuple[Path, bool]:
    """Make sure `pack_root` is in ComfyUI's custom_nodes; return (path there, whether we created it)."""
    custom = comfyui_path / "custom_nodes"
    custom.mkdir(exist_ok=True)
    for entry in custom.iterdir():
        try:
            if entry.resolve() == pack_root.resolve():
                return entry, False
        except OSError:
            continue
    target = custom / PACK_LINK_NAME
    if target.exists() or target.is_symlink():
        target = custom / f"{PACK_LINK_NAME}-test-{os.getpid()}"
    try:
        target.symlink_to(pack_root, target_is_directory=True)
    except OSError:  # no symlinks (Windows without privileges): copy the pack's runtime files
        shutil.copytree(pack_root, target, ignore=shutil.ignore_patterns(
            ".git", ".venv", "tests", "training", "__pycache__", "*.egg-info", ".*cache"))
    return target, True


def unlink_pack(path: Path) -> None:
    if path.is_symlink():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


class ComfyServer:
    """One ComfyUI process on 127.0.0.1 with its own input/output/temp/user folders under `workdir`."""

    def __init__(self, comfyui_path, *, python: str | None = None, workdir, port: int | None = None,
                 extra_args: tuple[str, ...] = ()):
        self.comfyui_path = Path(comfyui_path).resolve()
        self.python = python or sys.executable
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.extra_args = tuple(extra_args)
        self.input_dir = self.workdir / "input"
        self.output_dir = self.workdir / "output"
        self.temp_dir = self.workdir / "temp_base"  # ComfyUI puts its temp/ folder inside this
        self.user_dir = self.workdir / "user"
        self.log_path = self.workdir / "comfyui.log"
        self.proc: subprocess.Popen | None = None
        self._pack_path: Path | None = None
        self._pack_created = False
        self._log_file = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    # -- lifecycle

    def _supported(self, flag: str) -> bool:
        """Whether this ComfyUI has a command-line flag (read from comfy/cli_args.py, no process)."""
        try:
            text = (self.comfyui_path / "comfy" / "cli_args.py").read_text(encoding="utf-8")
        except OSError:
            return False
        return f'"{flag}"' in text or f"'{flag}'" in text

    def command(self) -> list[str]:
        cmd = [self.python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
               "--input-directory", str(self.input_dir), "--output-directory", str(self.output_dir)]
        optional = [("--temp-directory", str(self.temp_dir)), ("--user-directory", str(self.user_dir)),
                    ("--database-url", "sqlite:///:memory:")]
        for flag, value in optional:
            if self._supported(flag):
                cmd += [flag, value]
        if self._supported("--disable-auto-launch"):
            cmd.append("--disable-auto-launch")
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 300.0) -> None:
        if not (self.comfyui_path / "main.py").is_file():
            raise FileNotFoundError(f"no main.py in {self.comfyui_path}: COMFYUI_PATH must be a ComfyUI checkout")
        for d in (self.input_dir, self.output_dir, self.temp_dir, self.user_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._pack_path, self._pack_created = link_pack(self.comfyui_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        self._log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), cwd=self.comfyui_path, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with code {self.proc.returncode} while starting:\n"
                                   f"{self.log_tail()}")
            try:
                http_json(self.url + "/system_stats", timeout=5)
                return
            except (urllib.error.URLError, OSError, ValueError):
                time.sleep(1.0)
        raise TimeoutError(f"ComfyUI did not answer on {self.url} within {timeout:.0f} s:\n{self.log_tail()}")

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
                    try:
                        os.killpg(self.proc.pid, sig)  # its own session: main.py and any children
                    except (ProcessLookupError, PermissionError, AttributeError):
                        self.proc.send_signal(sig)
                    try:
                        self.proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        continue
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            if self._pack_created and self._pack_path is not None:
                unlink_pack(self._pack_path)
                self._pack_created = False

    # -- diagnostics

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_text()
        return text[-chars:] if text else "(empty log)"

    def pack_import_failed(self) -> bool:
        """True when ComfyUI's log says our pack failed to import."""
        name = self._pack_path.name if self._pack_path else PACK_LINK_NAME
        return any("IMPORT FAILED" in line and name in line for line in self.log_text().splitlines())

    @property
    def pack_dir_name(self) -> str | None:
        return self._pack_path.name if self._pack_path else None


class UrllibClient:
    """The few calls the test needs, for when iasa_core.headless is not available."""

    def __init__(self, server: str):
        self.base_url = f"http://{server}"

    def queue(self, prompt: dict) -> str:
        try:
            body = http_json(self.base_url + "/prompt", {"prompt": prompt, "client_id": "iasa-integration-test"})
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"ComfyUI refused the prompt ({exc.code}): "
                               f"{exc.read().decode('utf-8', 'replace')[:3000]}") from None
        return str(body["prompt_id"])

    def history(self, prompt_id: str) -> dict | None:
        body = http_json(f"{self.base_url}/history/{prompt_id}")
        return body.get(prompt_id) if isinstance(body, dict) else None


def make_client(server: str):
    """iasa_core.headless.ComfyClient when it exists, else UrllibClient (same queue/history calls)."""
    try:
        from iasa_core.headless import ComfyClient
    except ImportError:
        return UrllibClient(server)
    return ComfyClient(server, timeout=60.0)


def wait_for_history(client, prompt_id: str, timeout: float, server: ComfyServer | None = None,
                     poll: float = 2.0) -> dict:
    """Poll /history until the prompt is recorded (finished or failed); return its entry."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entry = client.history(prompt_id)
        if entry and (entry.get("status") or {}).get("completed") is not None:
            return entry
        if entry and entry.get("outputs"):
            return entry
        if server is not None and server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"ComfyUI died while running the prompt:\n{server.log_tail()}")
        time.sleep(poll)
    raise TimeoutError(f"prompt {prompt_id} did not finish within {timeout:.0f} s"
                       + (f":\n{server.log_tail()}" if server else ""))


def saved_files(outputs: dict, output_dir: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Paths of the files of type "output" in a history entry's outputs that end with `suffixes`."""
    found = []
    for node_out in (outputs or {}).values():
        for items in (node_out or {}).values():
            if not isinstance(items, list):
                continue
            for item in items:
                if (isinstance(item, dict) and item.get("filename") and item.get("type", "output") == "output"
                        and item["filename"].lower().endswith(suffixes)):
                    found.append(output_dir / (item.get("subfolder") or "") / item["filename"])
    return found
