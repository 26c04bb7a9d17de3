"""`queue` / iasa_core.headless against a fake ComfyUI server on 127.0.0.1 (stdlib only)."""

from __future__ import annotations

import argparse
import base64
import email
import email.policy
import hashlib
import json
import queue
import select
import socket
import struct
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from iasa_core import headless, headless_cli
from iasa_core.headless import ComfyClient, ComfyError, apply_sets

VIDEO_BYTES = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40
PROMPT = {
    "1": {"class_type": "IASALoadAudio", "inputs": {"audio_file": "speech.wav"}, "_meta": {"title": "Load Audio"}},
    "2": {"class_type": "IASASampler", "inputs": {"audio": ["1", 0], "seed": 0, "steps": 4, "cfg": 1.0},
          "_meta": {"title": "Sampler"}},
    "3": {"class_type": "SaveVideo", "inputs": {"video": ["2", 0], "filename_prefix": "video/IASA"},
          "_meta": {"title": "Save Video"}},
}
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ----------------------------------------------------------------------------- the fake server


class FakeComfy:
    """What the tests script and inspect: mode, received prompts and uploads, served files."""

    def __init__(self):
        self.mode = "ok"  # ok | reject | exec_error | hang | silent
        self.prompts: dict[str, dict] = {}
        self.history: dict[str, dict] = {}
        self.files = {("IASA_00001_.mp4", "video", "output"): VIDEO_BYTES}
        # the output list of the SaveVideo node (tests put hostile names here) and, when set, the upload answer
        self.outputs: list = [{"filename": "IASA_00001_.mp4", "subfolder": "video", "type": "output"}]
        self.upload_answer: dict | None = None
        self.inputs: dict[str, bytes] = {"speech.wav": b"an older, different speech.wav"}
        self.ws_clients: list[str] = []
        self._queues: dict[str, queue.Queue] = {}
        self._lock = threading.Lock()
        self.stopped = threading.Event()

    def queue_for(self, client_id: str) -> queue.Queue:
        with self._lock:
            return self._queues.setdefault(client_id, queue.Queue())

    def script(self, pid: str, client_id: str):
        """Push the websocket messages ComfyUI would send for `pid` (execution.py / main.py order)."""
        q = self.queue_for(client_id)

        def send(mtype, **data):
            q.put({"type": mtype, "data": data})

        def finish(status_str, messages, outputs):
            self.history[pid] = {"prompt": [0, pid, self.prompts[pid], {"client_id": client_id}, ["3"]],
                                 "outputs": outputs,
                                 "status": {"status_str": status_str, "completed": status_str == "success",
                                            "messages": messages}}

        if self.mode == "hang":
            send("execution_start", prompt_id=pid, timestamp=1)
            return
        if self.mode == "silent":  # every message missed; only the history tells
            finish("success", [], {"3": {"images": self.outputs, "animated": [True]}})
            return
        send("status", status={"exec_info": {"queue_remaining": 1}})
        send("execution_start", prompt_id=pid, timestamp=1)
        send("execution_cached", nodes=["1"], prompt_id=pid, timestamp=2)
        send("executing", node="2", display_node="2", prompt_id=pid)
        # another client's prompt: broadcast messages must not be mixed in
        send("executing", node="9", display_node="9", prompt_id="someone-else")
        if self.mode == "exec_error":
            send("progress", value=1, max=4, prompt_id=pid, node="2")
            err = {"prompt_id": pid, "node_id": "2", "node_type": "IASASampler", "executed": ["1"],
                   "exception_message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                   "exception_type": "torch.OutOfMemoryError",
                   "traceback": ['  File "execution.py", line 496, in execute\n',
                                 '  File "nodes.py", line 12, in sample\n    x = model(x)\n'],
                   "current_inputs": {}, "current_outputs": {}, "timestamp": 3}
            q.put({"type": "execution_error", "data": err})
            q.put(lambda: finish("error", [["execution_start", {"prompt_id": pid}],
                                           ["execution_error", err]], {}))
            send("executing", node=None, prompt_id=pid)
            return
        for step in range(1, 5):
            send("progress", value=step, max=4, prompt_id=pid, node="2")
            if step == 2:  # a binary preview frame: 4-byte event type, 4-byte image type, image
                q.put(struct.pack(">II", 1, 1) + b"\xff\xd8\xff\xe0 not really a jpeg")
        send("executing", node="3", display_node="3", prompt_id=pid)
        out = {"images": self.outputs, "animated": [True]}
        send("executed", node="3", display_node="3", output=out, prompt_id=pid)
        send("execution_success", prompt_id=pid, timestamp=4)
        q.put(lambda: finish("success", [["execution_start", {"prompt_id": pid}],
                                         ["execution_cached", {"nodes": ["1"], "prompt_id": pid}],
                                         ["execution_success", {"prompt_id": pid}]], {"3": out}))
        send("executing", node=None, prompt_id=pid)  # main.py: sent after the history is written


def _ws_frame(payload: bytes, opcode: int) -> bytes:
    n = len(payload)
    if n < 126:
        head = struct.pack(">BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack(">BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
    return head + payload


def _make_handler(state: FakeComfy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, code: int, body: bytes, ctype="application/json"):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, code: int, obj):
            self._send(code, json.dumps(obj).encode())

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
            if url.path == "/ws":
                return self._websocket(query.get("clientId") or uuid.uuid4().hex)
            if url.path.startswith("/history/"):
                pid = urllib.parse.unquote(url.path[len("/history/"):])
                return self._json(200, {pid: state.history[pid]} if pid in state.history else {})
            if url.path == "/view":
                key = (query.get("filename"), query.get("subfolder", ""), query.get("type", "output"))
                if key in state.files:
                    return self._send(200, state.files[key], "video/mp4")
                return self._send(404, b"")
            self._send(404, b"")

        def do_POST(self):
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/prompt":
                body = json.loads(self._body())
                if state.mode == "reject":  # execution.validate_prompt's answer, server.py: 400
                    return self._json(400, {
                        "error": {"type": "prompt_outputs_failed_validation",
                                  "message": "Prompt outputs failed validation",
                                  "details": "Value not in list: model: 'nope.safetensors' not in [...]",
                                  "extra_info": {}},
                        "node_errors": {"2": {"errors": [{
                            "type": "value_not_in_list", "message": "Value not in list",
                            "details": "model: 'nope.safetensors' not in ['iasa_student.safetensors']",
                            "extra_info": {"input_name": "model"}}],
                            "dependent_outputs": ["3"], "class_type": "IASASampler"}}})
                pid = str(uuid.uuid4())
                state.prompts[pid] = body["prompt"]
                self._json(200, {"prompt_id": pid, "number": len(state.prompts), "node_errors": {}})
                state.script(pid, body.get("client_id", ""))
                return
            if url.path == "/upload/image":
                raw = self._body()
                msg = email.message_from_bytes(
                    f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw,
                    policy=email.policy.HTTP)
                fields, image = {}, None
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name == "image":
                        image = (part.get_filename(), part.get_payload(decode=True))
                    else:
                        fields[name] = part.get_content()
                if image is None or not image[0]:
                    return self._send(400, b"")
                filename, data = image
                stem, dot, ext = filename.rpartition(".")
                i = 1
                while filename in state.inputs and state.inputs[filename] != data \
                        and fields.get("overwrite") not in ("true", "1"):
                    filename = f"{stem} ({i}){dot}{ext}"
                    i += 1
                state.inputs[filename] = data
                if state.upload_answer is not None:
                    return self._json(200, state.upload_answer)
                return self._json(200, {"name": filename, "subfolder": "", "type": "input"})
            self._send(404, b"")

        def _websocket(self, client_id: str):
            key = self.headers["Sec-WebSocket-Key"]
            accept = base64.b64encode(hashlib.sha1((key + _WS_GUID).encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            state.ws_clients.append(client_id)
            conn = self.connection
            q = state.queue_for(client_id)
            q.put({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": client_id}})
            try:
                while not state.stopped.is_set():
                    if select.select([conn], [], [], 0)[0]:
                        data = conn.recv(4096)
                        if not data or data[0] & 0x0F == 0x8:  # closed, or a close frame
                            return
                    try:
                        item = q.get(timeout=0.02)
                    except queue.Empty:
                        continue
                    if callable(item):
                        item()
                    elif isinstance(item, bytes):
                        conn.sendall(_ws_frame(item, 0x2))
                    else:
                        conn.sendall(_ws_frame(json.dumps(item).encode(), 0x1))
            except OSError:
                return

    return Handler


@pytest.fixture
def comfy():
    state = FakeComfy()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.address = f"127.0.0.1:{server.server_address[1]}"
    yield state
    state.stopped.set()
    server.shutdown()
    server.server_close()


# ----------------------------------------------------------------------------- helpers


def _cli(argv: list[str]) -> int:
    """Run `python -m iasa_core queue ...`: through main() once `queue` is wired in there."""
    from iasa_core import __main__ as cli_main

    parser = cli_main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "queue" in sub.choices:
        return cli_main.main(["queue", *argv])
    p = argparse.ArgumentParser()
    headless_cli.add_parser(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["queue", *argv])
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # what main() does
        print(f"error: {exc}", file=__import__("sys").stderr)
        return 2


@pytest.fixture
def workflow(tmp_path):
    path = tmp_path / "talk_api.json"
    path.write_text(json.dumps(PROMPT))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- tests


def test_successful_run_downloads_the_video_and_prints_progress(comfy, workflow, tmp_path, capsys):
    speech = tmp_path / "speech.wav"
    speech.write_bytes(b"RIFF fake wav")
    out = tmp_path / "outs"
    rc = _cli([str(workflow), "--server", comfy.address, "--out", str(out), "--upload", str(speech),
               "--set", "2.seed=3", "--set", "Sampler.cfg=1.5"])
    text = capsys.readouterr().out
    assert rc == 0, text
    video = out / "video" / "IASA_00001_.mp4"
    assert video.read_bytes() == VIDEO_BYTES
    assert str(video) in text
    for line in ("cached: 1 (IASALoadAudio)", "executing 2 (IASASampler)", "[2 IASASampler] step 3/4",
                 "[2 IASASampler] step 4/4", "executing 3 (SaveVideo)", "output of 3 (SaveVideo): IASA_00001_.mp4"):
        assert line in text
    assert "executing 9" not in text  # another client's prompt
    assert "done in" in text and "2 nodes run, 1 cached, 1 file downloaded" in text
    # the upload went to the input folder; ComfyUI renamed it, so the workflow was pointed at the new name
    assert comfy.inputs["speech (1).wav"] == b"RIFF fake wav"
    (sent,) = comfy.prompts.values()
    assert sent["1"]["inputs"]["audio_file"] == "speech (1).wav"
    assert sent["2"]["inputs"]["seed"] == 3 and sent["2"]["inputs"]["cfg"] == 1.5
    assert sent["2"]["inputs"]["audio"] == ["1", 0]
    # the websocket was opened with the client_id the prompt was queued with
    assert len(comfy.ws_clients) == 1


def test_run_workflow_returns_a_result(comfy, tmp_path):
    lines = []
    result = headless.run_workflow(PROMPT, comfy.address, out_dir=tmp_path, log=lines.append)
    assert result.status == "success" and result.prompt_id in comfy.prompts
    assert [p.read_bytes() for p in result.outputs] == [VIDEO_BYTES]
    assert result.cached == ["1"] and result.executed == ["2", "3"] and result.seconds > 0
    assert "3" in result.node_outputs


def test_apply_sets_by_id_and_title_and_value_parsing():
    out = apply_sets(PROMPT, ["2.seed=42", "Load Audio.audio_file=my speech.wav", "2.cfg=2.5",
                              "3.filename_prefix=\"007\"", "2.steps=[\"5\", 0]"])
    assert out["2"]["inputs"]["seed"] == 42
    assert out["1"]["inputs"]["audio_file"] == "my speech.wav"
    assert out["2"]["inputs"]["cfg"] == 2.5
    assert out["3"]["inputs"]["filename_prefix"] == "007"
    assert out["2"]["inputs"]["steps"] == ["5", 0]
    assert PROMPT["2"]["inputs"]["seed"] == 0  # a copy


def test_apply_sets_errors_list_what_exists():
    with pytest.raises(ValueError, match=r"no node '99'.*1 \(IASALoadAudio, 'Load Audio'\).*2 \(IASASampler"):
        apply_sets(PROMPT, ["99.seed=1"])
    with pytest.raises(ValueError, match=r"has no input 'sed'; its inputs: audio \(link\), seed, steps, cfg"):
        apply_sets(PROMPT, ["2.sed=1"])
    with pytest.raises(ValueError, match="NODE.INPUT=VALUE"):
        apply_sets(PROMPT, ["2seed=1"])
    twins = {"1": {"class_type": "A", "inputs": {"x": 1}, "_meta": {"title": "T"}},
             "2": {"class_type": "A", "inputs": {"x": 1}, "_meta": {"title": "T"}}}
    with pytest.raises(ValueError, match="used by nodes 1, 2"):
        apply_sets(twins, ["T.x=2"])


def test_bad_set_exits_non_zero_before_queueing(comfy, workflow, capsys):
    rc = _cli([str(workflow), "--server", comfy.address, "--set", "2.nope=1"])
    assert rc == 2
    assert "has no input 'nope'" in capsys.readouterr().err
    assert not comfy.prompts


def test_refused_prompt_shows_comfyui_error_and_node_errors(comfy, workflow, capsys):
    comfy.mode = "reject"
    rc = _cli([str(workflow), "--server", comfy.address])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Prompt outputs failed validation" in err
    assert "node 2 (IASASampler, 'Sampler'): Value not in list: model: 'nope.safetensors'" in err


def test_execution_error_names_the_node_and_exception(comfy, workflow, tmp_path, capsys):
    comfy.mode = "exec_error"
    rc = _cli([str(workflow), "--server", comfy.address, "--out", str(tmp_path / "o")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "executing 2 (IASASampler)" in captured.out
    assert ("ComfyUI failed at node 2 (IASASampler): torch.OutOfMemoryError: "
            "CUDA out of memory. Tried to allocate 2.00 GiB") in captured.err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ComfyError) as info:
        headless.run_workflow(PROMPT, comfy.address, out_dir=tmp_path, log=lambda s: None)
    assert info.value.node_id == "2" and info.value.node_type == "IASASampler"
    assert info.value.exception_type == "torch.OutOfMemoryError"
    assert isinstance(info.value, RuntimeError)


def test_ui_format_file_is_explained(tmp_path, capsys):
    ui = tmp_path / "talk.json"
    ui.write_text(json.dumps({"last_node_id": 3, "nodes": [{"id": 1, "type": "IASASampler"}], "links": [],
                              "version": 0.4}))
    rc = _cli([str(ui), "--server", f"127.0.0.1:{_free_port()}"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "this is a UI workflow (it has 'nodes' and 'links')" in err and "Export (API)" in err
    assert "_api.json" in err


def test_unreachable_server_says_how_to_start_comfyui(workflow, capsys):
    port = _free_port()
    rc = _cli([str(workflow), "--server", f"127.0.0.1:{port}", "--request-timeout", "2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"cannot reach ComfyUI at http://127.0.0.1:{port}" in err
    assert "python main.py --listen 127.0.0.1 --port 8188 --cpu" in err


def test_missing_workflow_file(capsys):
    assert _cli(["/nonexistent/flow_api.json"]) == 2
    assert "workflow file not found" in capsys.readouterr().err


def test_timeout_while_waiting(comfy, workflow, capsys):
    comfy.mode = "hang"
    rc = _cli([str(workflow), "--server", comfy.address, "--timeout", "0.5"])
    assert rc == 2
    assert "timed out after 0.5 s" in capsys.readouterr().err


def test_missed_messages_fall_back_to_history(comfy):
    comfy.mode = "silent"
    with ComfyClient(comfy.address, timeout=5) as client:
        client.connect()
        pid = client.queue(PROMPT)
        entry = client.watch(pid, timeout=5, poll=0.2)
    assert entry["status"]["status_str"] == "success"


def test_server_address_forms():
    assert headless._split_server("127.0.0.1:8188")[:2] == ("http://127.0.0.1:8188", "ws://127.0.0.1:8188")
    assert headless._split_server("myhost")[0] == "http://myhost:8188"
    assert headless._split_server("https://comfy.example.org/")[:2] == ("https://comfy.example.org:443",
                                                                        "wss://comfy.example.org:443")
    with pytest.raises(ValueError):
        headless._split_server("127.0.0.1:notaport")


# ----------------------------------------------------------------------------- server-given names


@pytest.mark.parametrize("filename,subfolder,parts,changed", [
    ("IASA_00001_.mp4", "video", ["video", "IASA_00001_.mp4"], False),
    ("a.mp4", None, ["a.mp4"], False),
    ("a.mp4", "x\\y", ["x", "y", "a.mp4"], False),
    ("../a.mp4", "", ["a.mp4"], True),
    ("a.mp4", "../../up", ["up", "a.mp4"], True),
    ("a.mp4", "x/../y", ["x", "y", "a.mp4"], True),
    ("/etc/a.mp4", "", ["etc", "a.mp4"], True),
    ("a.mp4", "\\\\server\\share", ["server", "share", "a.mp4"], True),
    ("..\\..\\w.mp4", "C:\\Windows", ["C_", "Windows", "w.mp4"], True),
    ("new\nline\x00.mp4", "", ["new_line_.mp4"], True),
])
def test_safe_parts_makes_server_names_relative(filename, subfolder, parts, changed):
    from iasa_core.headless_names import safe_parts

    assert safe_parts(filename, subfolder) == (parts, changed)


@pytest.mark.parametrize("filename,subfolder,match", [
    (".", "", "names no file"), ("..", "video", "names no file"), ("", "", "names no file"),
    ("video/", "", "names no file"), ("x/..", "", "names no file"), (5, "", "not a string"),
    (["a"], "", "not a string"), (None, "", "not a string"), ("a.mp4", 7, "not a string"),
    ("a" * 300, "", "longer than"),
])
def test_safe_parts_refuses_what_cannot_be_made_safe(filename, subfolder, match):
    from iasa_core.headless_names import UnsafeName, safe_parts

    with pytest.raises(UnsafeName, match=match):
        safe_parts(filename, subfolder)


def _files_under(root) -> dict[str, tuple[int, int]]:
    """Every file and link below ``root`` (links not followed) with its size and modification time."""
    import os

    found = {}
    for folder, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            found[path] = (st.st_size, st.st_mtime_ns)
    return found


def test_hostile_output_names_never_write_outside_out(comfy, workflow, tmp_path, capsys):
    import os

    box = tmp_path / "box"
    out, outside = box / "out", box / "outside"
    out.mkdir(parents=True)
    outside.mkdir()
    (out / "earlier.txt").write_text("an earlier download")  # --out exists and is not empty
    os.symlink(outside, out / "link")  # a link inside --out that leads out of it
    kept = {  # (filename, subfolder) -> where it must land, relative to --out
        ("IASA_00001_.mp4", "video"): "video/IASA_00001_.mp4",
        ("../escape.mp4", ""): "escape.mp4",
        ("x.mp4", "../../outside"): "outside/x.mp4",
        ("/tmp/abs.mp4", ""): "tmp/abs.mp4",
        ("..\\..\\w.mp4", "C:\\Windows"): "C_/Windows/w.mp4",
        ("nul\x00.mp4", ""): "nul_.mp4",
    }
    skipped = [(".", ""), ("..", "video"), ("", ""), (".", "."), ("..", ".."), ("link.mp4", "link"),
               ("a" * 300, ""), (5, ""), (["a"], ""), ("a.mp4", 7), (None, "video")]
    comfy.outputs = [{"filename": f, "subfolder": s, "type": "output"} for f, s in [*kept, *skipped]]
    comfy.outputs.append({"filename": "IASA_00001_.mp4", "subfolder": "video", "type": "output"})  # listed twice
    for i, (f, s) in enumerate([*kept, *skipped]):
        if isinstance(f, str) and isinstance(s, str):
            comfy.files.setdefault((f, s, "output"), b"file %d" % i)
    before = _files_under(tmp_path)

    rc = _cli([str(workflow), "--server", comfy.address, "--out", str(out)])
    text = capsys.readouterr()
    assert rc == 0, text.err
    after = _files_under(tmp_path)
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed and all(os.path.realpath(p).startswith(str(out.resolve()) + os.sep) for p in changed), changed
    assert not any(p.endswith(".part") for p in after)
    assert not list(outside.iterdir()) and (out / "earlier.txt").read_text() == "an earlier download"
    landed = {os.path.relpath(p, out) for p in changed}
    assert landed == set(kept.values())
    assert (out / "video" / "IASA_00001_.mp4").read_bytes() == VIDEO_BYTES
    warnings = [line for line in text.out.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == len(skipped), text.out
    assert "names no file" in text.out and "not a string" in text.out and "a link inside it leads out" in text.out
    assert f"{len(kept)} files downloaded" in text.out


def test_hostile_names_through_the_library_leave_nothing_outside(comfy, tmp_path):
    comfy.outputs = [{"filename": ".", "subfolder": ""}, {"filename": "..", "subfolder": ""},
                     {"filename": "../../up.mp4", "subfolder": "../.."}]
    comfy.files[("../../up.mp4", "../..", "output")] = b"up"
    out = tmp_path / "deep" / "out"
    lines: list[str] = []
    result = headless.run_workflow(PROMPT, comfy.address, out_dir=out, log=lines.append)
    assert result.outputs == [out / "up.mp4"] and (out / "up.mp4").read_bytes() == b"up"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["deep", "out", "up.mp4"]
    assert sum(line.startswith("warning: skipped") for line in lines) == 2


@pytest.mark.parametrize("answer", [{"name": "../../evil.wav", "subfolder": ""}, {"name": 5},
                                    {"name": "speech.wav", "subfolder": "/abs"}, {"name": "a\nb.wav"}])
def test_an_unsafe_stored_upload_name_is_refused(comfy, workflow, tmp_path, capsys, answer):
    speech = tmp_path / "speech.wav"
    speech.write_bytes(b"RIFF fake wav")
    comfy.upload_answer = answer
    rc = _cli([str(workflow), "--server", comfy.address, "--out", str(tmp_path / "o"), "--upload", str(speech)])
    err = capsys.readouterr().err
    assert rc == 2 and ("not a plain relative file name" in err or "is not a string" in err), err
    assert "\nb.wav" not in err and not comfy.prompts


def test_a_stored_upload_name_in_a_subfolder_is_used(comfy, workflow, tmp_path, capsys):
    speech = tmp_path / "speech.wav"
    speech.write_bytes(b"RIFF fake wav")
    comfy.upload_answer = {"name": "speech.wav", "subfolder": "clips", "type": "input"}
    rc = _cli([str(workflow), "--server", comfy.address, "--out", str(tmp_path / "o"), "--upload", str(speech)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "the server stored it as 'clips/speech.wav'; set 1.audio_file to it" in text
    (sent,) = comfy.prompts.values()
    assert sent["1"]["inputs"]["audio_file"] == "clips/speech.wav"
