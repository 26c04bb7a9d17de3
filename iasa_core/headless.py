"""Run ComfyUI workflows headless: queue an API-format prompt, follow it, fetch its files.

ComfyUI's HTTP API, as served by its `server.py`:

- ``POST /prompt`` with ``{"prompt": {id: {"class_type", "inputs"}}, "client_id": ...}`` answers
  ``{"prompt_id", "number", "node_errors"}``, or 400 with ``{"error": {"type", "message", "details",
  "extra_info"}, "node_errors": {id: {"class_type", "errors": [...], "dependent_outputs"}}}``.
- ``GET /ws?clientId=...`` is a websocket of JSON text frames ``{"type", "data"}`` (status,
  execution_start, execution_cached, executing, progress, executed, execution_success,
  execution_error, execution_interrupted) and binary preview frames (ignored here). The end of a
  prompt is ``executing`` with ``node: null``, sent after the history entry is written.
- ``GET /history/{prompt_id}`` -> ``{prompt_id: {"prompt", "outputs", "status"}}``.
- ``GET /view?filename=&subfolder=&type=`` serves a file; ``POST /upload/image`` (multipart field
  ``image``) stores a file in the input folder and answers ``{"name", "subfolder", "type"}``.

Only the standard library and `websocket-client` are used, so this works outside ComfyUI.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import mimetypes
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .headless_names import UnsafeName, local_path, stored_name

DEFAULT_SERVER = "127.0.0.1:8188"
START_HINT = "python main.py --listen 127.0.0.1 --port 8188 --cpu"
UI_FORMAT_MESSAGE = ("this is a UI workflow (it has 'nodes' and 'links'); export it with 'Export (API)' "
                     "or use its *_api.json (the pack's are in workflows/api/)")
_DETAILS_CHARS = 300  # "Value not in list" details carry the whole list of choices


class ComfyError(RuntimeError):
    """ComfyUI refused or failed a prompt, or could not be reached. The message is for the user."""

    def __init__(self, message: str, *, node_id: str | None = None, node_type: str | None = None,
                 exception_type: str | None = None, exception_message: str | None = None,
                 traceback: list[str] | None = None, response: dict | None = None):
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = traceback or []
        self.response = response


# ----------------------------------------------------------------------------- workflow files


def is_ui_workflow(data) -> bool:
    """True for the editor's format (what 'Save' writes), which /prompt does not take."""
    return isinstance(data, dict) and "nodes" in data and "links" in data


def check_api_prompt(data, source: str = "the workflow") -> dict:
    """Return the API-format prompt in `data` or raise ValueError saying what is wrong.

    Accepts the prompt itself or a saved /prompt body (``{"prompt": {...}, ...}``).
    """
    if is_ui_workflow(data):
        raise ValueError(f"{source}: {UI_FORMAT_MESSAGE}")
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict) and "class_type" not in data["prompt"]:
        data = data["prompt"]
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{source}: expected an API-format workflow, a JSON object "
                         "{node_id: {\"class_type\": ..., \"inputs\": {...}}}")
    bad = [str(k) for k, v in data.items() if not (isinstance(v, dict) and "class_type" in v)]
    if bad:
        raise ValueError(f"{source}: not an API-format workflow: entries without a class_type: "
                         f"{', '.join(bad[:10])}. Export it from ComfyUI with 'Export (API)'")
    return data


def load_workflow(path) -> dict:
    """Read an API-format workflow JSON file (FileNotFoundError / ValueError with a clear message)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"workflow file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    return check_api_prompt(data, str(p))


def _node_label(node_id: str, node: dict) -> str:
    title = (node.get("_meta") or {}).get("title")
    cls = node.get("class_type", "?")
    return f"{node_id} ({cls}{', ' + repr(title) if title and title != cls else ''})"


def _parse_value(text: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, ValueError):
        return text


def resolve_node(prompt: dict, key: str) -> str:
    """The id of the node addressed by `key`: a node id or a unique ``_meta.title``."""
    if key in prompt:
        return key
    titled = [nid for nid, node in prompt.items() if (node.get("_meta") or {}).get("title") == key]
    if len(titled) == 1:
        return titled[0]
    if len(titled) > 1:
        raise ValueError(f"--set: the title {key!r} is used by nodes {', '.join(titled)}; use the node id")
    nodes = "; ".join(_node_label(nid, node) for nid, node in prompt.items())
    raise ValueError(f"--set: no node {key!r} in the workflow (by id or title). Nodes: {nodes}")


def apply_sets(prompt: dict, sets: Iterable[str]) -> dict:
    """A copy of `prompt` with ``NODE.INPUT=VALUE`` edits applied.

    NODE is a node id or a unique ``_meta.title``; VALUE is parsed as JSON when it parses
    (``3``, ``1.5``, ``true``, ``[4, 0]``, ``"007"``), else kept as a string (``speech.wav``).
    """
    out = copy.deepcopy(prompt)
    for item in sets:
        key, eq, raw = item.partition("=")
        node_key, dot, input_name = key.strip().rpartition(".")
        if not eq or not dot or not node_key or not input_name:
            raise ValueError(f"--set {item!r}: expected NODE.INPUT=VALUE, e.g. 12.seed=3 or "
                             "'Load Audio.audio=speech.wav'")
        node_id = resolve_node(out, node_key)
        inputs = out[node_id].setdefault("inputs", {})
        if input_name not in inputs:
            names = ", ".join(f"{k} (link)" if _is_link(v) else k for k, v in inputs.items()) or "none"
            raise ValueError(f"--set {item!r}: node {_node_label(node_id, out[node_id])} has no input "
                             f"{input_name!r}; its inputs: {names}")
        inputs[input_name] = _parse_value(raw)
    return out


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def replace_input_value(prompt: dict, old: str, new: str) -> list[str]:
    """Replace string inputs equal to `old` by `new` in place; return "node.input" of each change."""
    changed = []
    for nid, node in prompt.items():
        for name, value in (node.get("inputs") or {}).items():
            if value == old:
                node["inputs"][name] = new
                changed.append(f"{nid}.{name}")
    return changed


# ----------------------------------------------------------------------------- error text


def _short(text, limit: int = _DETAILS_CHARS) -> str:
    text = str(text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_prompt_error(body, prompt: dict | None = None) -> str:
    """Readable text of a /prompt error answer: the error, then one line per node error."""
    if not isinstance(body, dict):
        return _short(body, 1000)
    err = body.get("error")
    lines = []
    if isinstance(err, dict):
        head = err.get("message") or err.get("type") or "error"
        details = err.get("details")
        node_errors = body.get("node_errors") or {}
        # the details repeat the node errors, one per line; show them only when there are none
        if details and not node_errors:
            head += f": {_short(details)}"
        lines.append(head)
    elif err:
        lines.append(str(err))
    node_errors = body.get("node_errors") or {}
    if isinstance(node_errors, dict):
        for nid, info in node_errors.items():
            info = info if isinstance(info, dict) else {"errors": info}
            cls = info.get("class_type") or ((prompt or {}).get(nid) or {}).get("class_type") or "?"
            title = (((prompt or {}).get(nid) or {}).get("_meta") or {}).get("title")
            label = f"node {nid} ({cls}{', ' + repr(title) if title and title != cls else ''})"
            errors = info.get("errors") or []
            if not isinstance(errors, list):
                errors = [errors]
            if not errors:
                lines.append(f"  {label}: invalid")
            for e in errors:
                if isinstance(e, dict):
                    msg = e.get("message") or e.get("type") or "error"
                    if e.get("details"):
                        msg += f": {_short(e['details'])}"
                else:
                    msg = str(e)
                lines.append(f"  {label}: {msg}")
    return "\n".join(lines) or _short(json.dumps(body), 1000)


def execution_error(data: dict, prompt: dict | None = None, interrupted: bool = False) -> ComfyError:
    """A ComfyError for an execution_error / execution_interrupted message."""
    nid = data.get("node_id")
    nid = None if nid is None else str(nid)
    ntype = data.get("node_type") or ((prompt or {}).get(nid) or {}).get("class_type")
    where = f"node {nid} ({ntype or '?'})" if nid is not None else "an unknown node"
    if interrupted:
        return ComfyError(f"the run was interrupted at {where}", node_id=nid, node_type=ntype)
    etype = data.get("exception_type") or "Exception"
    emsg = str(data.get("exception_message") or "").strip()
    tb = data.get("traceback") or []
    msg = f"ComfyUI failed at {where}: {etype}: {emsg}"
    if tb:
        last = "".join(tb).strip().splitlines()[-2:]
        msg += "\n  " + "\n  ".join(line.strip() for line in last)
    return ComfyError(msg, node_id=nid, node_type=ntype, exception_type=etype, exception_message=emsg,
                      traceback=tb)


# ----------------------------------------------------------------------------- the client


def _split_server(server: str) -> tuple[str, str, str]:
    """(http base url, ws base url, host) of "host:port", "http://host:port/" or "https://..."."""
    s = (server or DEFAULT_SERVER).strip()
    had_scheme = "://" in s
    if not had_scheme:
        s = "http://" + s
    u = urllib.parse.urlsplit(s)
    try:
        port = u.port
    except ValueError:
        port = -1
    if u.scheme not in ("http", "https", "ws", "wss") or not u.hostname or port == -1:
        raise ValueError(f"--server {server!r}: expected HOST:PORT or http://HOST:PORT")
    secure = u.scheme in ("https", "wss")
    if port is None:  # bare "host": ComfyUI's default port; a URL: its scheme's
        port = (443 if secure else 80) if had_scheme else 8188
    host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
    path = u.path.rstrip("/")
    http = f"{'https' if secure else 'http'}://{host}:{port}{path}"
    ws = f"{'wss' if secure else 'ws'}://{host}:{port}{path}"
    return http, ws, u.hostname


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _websocket_module():
    try:
        import websocket  # the websocket-client package
    except ImportError:
        raise ComfyError("following a ComfyUI run needs the websocket-client package: "
                         "pip install websocket-client") from None
    return websocket


class ComfyClient:
    """A synchronous client of one ComfyUI server.

    `timeout` bounds each HTTP request and the websocket connect/receive, in seconds.
    """

    def __init__(self, server: str = DEFAULT_SERVER, client_id: str | None = None, timeout: float = 30.0):
        self.base_url, self.ws_url, host = _split_server(server)
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        # a loopback server is never reached through an http_proxy from the environment
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(host) else []
        self._opener = urllib.request.build_opener(*handlers)
        self._ws = None
        self.last_node_errors: dict = {}  # node_errors of the last accepted prompt (outputs left out)

    # -- HTTP

    def _unreachable(self, reason) -> ComfyError:
        reason = getattr(reason, "strerror", None) or reason
        return ComfyError(f"cannot reach ComfyUI at {self.base_url} ({reason}). Is it running? Start it with "
                          f"`{START_HINT}` in the ComfyUI folder, or pass --server HOST:PORT")

    def _request(self, method: str, path: str, *, data: bytes | None = None,
                 headers: dict | None = None, query: dict | None = None):
        """Open a request; connection failures become ComfyError, HTTP errors stay HTTPError."""
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
        try:
            return self._opener.open(req, timeout=self.timeout)
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as exc:
            raise self._unreachable(exc.reason) from None
        except OSError as exc:  # refused, reset, timed out
            raise self._unreachable(exc) from None

    def _call(self, method: str, path: str, **kw) -> bytes:
        """The body of a request (HTTPError propagates)."""
        resp = self._request(method, path, **kw)
        try:
            with resp:
                return resp.read()
        except OSError as exc:
            raise ComfyError(f"reading the answer to {method} {path} from {self.base_url} failed: {exc}") from None

    def _json(self, method: str, path: str, payload=None, **kw):
        data = None if payload is None else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            body = self._call(method, path, data=data, headers=headers, **kw)
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", "replace")
            raise ComfyError(f"ComfyUI answered {exc.code} to {method} {path}: {_short(text, 500)}") from None
        try:
            return json.loads(body) if body.strip() else None
        except json.JSONDecodeError:
            raise ComfyError(f"ComfyUI answered {method} {path} with something not JSON: "
                             f"{_short(body.decode('utf-8', 'replace'), 200)}") from None

    def queue(self, prompt: dict) -> str:
        """Queue an API-format prompt; return its prompt_id. A refused prompt raises ComfyError."""
        payload = json.dumps({"prompt": prompt, "client_id": self.client_id}).encode()
        try:
            raw_body = self._call("POST", "/prompt", data=payload, headers={"Content-Type": "application/json"})
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                detail = format_prompt_error(json.loads(raw), prompt)
            except json.JSONDecodeError:
                detail = _short(raw, 1000) or exc.reason
            raise ComfyError(f"ComfyUI refused the workflow ({exc.code}): {detail}",
                             response=_try_json(raw)) from None
        body = _try_json(raw_body.decode("utf-8", "replace"))
        if not isinstance(body, dict) or "prompt_id" not in body:
            raise ComfyError(f"unexpected answer to POST /prompt: {_short(body, 300)}")
        self.last_node_errors = body.get("node_errors") or {}
        return str(body["prompt_id"])

    def history(self, prompt_id: str) -> dict | None:
        """The history entry of `prompt_id` ({"prompt", "outputs", "status"}) or None if not done."""
        body = self._json("GET", f"/history/{urllib.parse.quote(prompt_id)}")
        if isinstance(body, dict):
            return body.get(prompt_id)
        return None

    def download(self, file_info: dict, out_dir) -> Path:
        """Fetch one output ({"filename", "subfolder", "type"}) via /view into `out_dir`.

        The server's names are made safe first (``headless_names.local_path``); UnsafeName when they cannot be."""
        name = file_info.get("filename")
        subfolder = file_info.get("subfolder") or ""
        dest, _ = local_path(out_dir, name, subfolder)
        kind = file_info.get("type") or "output"
        query = {"filename": name, "subfolder": subfolder, "type": kind if isinstance(kind, str) else "output"}
        tmp = dest.with_name(dest.name + ".part")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with self._request("GET", "/view", query=query) as resp, open(tmp, "wb") as f:
                while chunk := resp.read(1 << 20):
                    f.write(chunk)
        except urllib.error.HTTPError as exc:
            tmp.unlink(missing_ok=True)
            raise ComfyError(f"could not download {name!r} (subfolder {subfolder!r}, type {query['type']}) "
                             f"from {self.base_url}/view: HTTP {exc.code}") from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise ComfyError(f"downloading {name!r} from {self.base_url} failed: {exc}") from None
        try:
            os.replace(tmp, dest)
        except OSError as exc:  # e.g. a folder of that name is already there
            tmp.unlink(missing_ok=True)
            raise ComfyError(f"could not save {name!r} as {dest}: {exc}") from None
        return dest

    def upload(self, path, *, overwrite: bool = False, subfolder: str = "") -> str:
        """Store a local file in the server's input folder (POST /upload/image, any file type).

        Returns the name to put in a workflow: ComfyUI renames a file whose name is taken by
        different content ("speech (1).wav"); with a subfolder it is "subfolder/name".
        """
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"file to upload not found: {p}")
        boundary = uuid.uuid4().hex
        ctype = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
        fields = {"type": "input", "overwrite": "true" if overwrite else "false"}
        if subfolder:
            fields["subfolder"] = subfolder
        chunks = []
        for k, v in fields.items():
            chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode())
        fname = p.name.replace('"', "_")
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{fname}\"\r\n"
                      f"Content-Type: {ctype}\r\n\r\n".encode())
        chunks.append(p.read_bytes())
        chunks.append(f"\r\n--{boundary}--\r\n".encode())
        data = b"".join(chunks)
        try:
            raw = self._call("POST", "/upload/image", data=data,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        except urllib.error.HTTPError as exc:
            hint = " (the file may be larger than the server's --max-upload-size)" if exc.code == 413 else ""
            raise ComfyError(f"uploading {p} to {self.base_url} failed: HTTP {exc.code}{hint}") from None
        body = _try_json(raw.decode("utf-8", "replace"))
        if not isinstance(body, dict):
            raise ComfyError(f"unexpected answer to POST /upload/image: {_short(raw, 200)}")
        try:
            return stored_name(body.get("name"), body.get("subfolder"), p.name)
        except UnsafeName as exc:
            raise ComfyError(f"uploading {p} to {self.base_url}: {exc}; not using it") from None

    # -- websocket

    def connect(self):
        """Open the websocket (before queueing, so that no message is missed)."""
        if self._ws is not None:
            return self._ws
        websocket = _websocket_module()
        url = f"{self.ws_url}/ws?clientId={urllib.parse.quote(self.client_id)}"
        try:
            self._ws = websocket.create_connection(url, timeout=self.timeout)
        except OSError as exc:
            raise self._unreachable(exc) from None
        except websocket.WebSocketException as exc:
            raise ComfyError(f"{self.base_url} does not speak ComfyUI's websocket at /ws ({exc}); "
                             "is --server the address of ComfyUI?") from None
        return self._ws

    def close(self):
        if self._ws is not None:
            try:
                self._ws.close()
            except Exception:  # noqa: BLE001 - closing a dead socket is not an error
                pass
            self._ws = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def watch(self, prompt_id: str, on_event: Callable[[str, dict], None] | None = None,
              timeout: float | None = None, poll: float = 5.0, prompt: dict | None = None) -> dict:
        """Follow `prompt_id` on the websocket until it ends; return its history entry.

        `on_event(type, data)` sees every JSON message about this prompt (binary preview frames
        are skipped). execution_error / execution_interrupted raise ComfyError. When the socket is
        quiet for `poll` seconds the history is checked, so a missed message cannot hang the wait;
        after `timeout` seconds in all, ComfyError.
        """
        websocket = _websocket_module()
        ws = self.connect()
        start = time.monotonic()
        deadline = None if timeout is None else start + timeout
        finished = False
        while not finished:
            wait = poll if deadline is None else max(0.05, min(poll, deadline - time.monotonic()))
            ws.settimeout(wait)
            try:
                frame = ws.recv()
            except websocket.WebSocketTimeoutException:
                entry = self.history(prompt_id)
                if entry is not None:
                    _raise_if_failed(entry, prompt)
                    return entry
                if deadline is not None and time.monotonic() >= deadline:
                    raise ComfyError(f"timed out after {timeout:g} s waiting for prompt {prompt_id}; it may "
                                     f"still be running: see {self.base_url}/queue") from None
                continue
            except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError) as exc:
                raise ComfyError(f"lost the connection to ComfyUI at {self.base_url} while prompt "
                                 f"{prompt_id} was running ({exc or 'closed'})") from None
            if not isinstance(frame, str):
                continue  # binary frames: previews (4-byte event type, then image bytes)
            try:
                msg = json.loads(frame)
            except json.JSONDecodeError:
                continue
            mtype = msg.get("type")
            data = msg.get("data") or {}
            if not isinstance(data, dict):
                continue
            pid = data.get("prompt_id")
            if pid is not None and str(pid) != prompt_id:
                continue  # another client's prompt (some messages are broadcast)
            if on_event is not None:
                on_event(mtype, data)
            if mtype == "execution_error":
                raise execution_error(data, prompt)
            if mtype == "execution_interrupted":
                raise execution_error(data, prompt, interrupted=True)
            if mtype == "executing" and data.get("node") is None and pid is not None:
                finished = True  # sent after the history entry is written (main.py prompt_worker)
            if deadline is not None and time.monotonic() >= deadline:
                raise ComfyError(f"timed out after {timeout:g} s waiting for prompt {prompt_id}; it may "
                                 f"still be running: see {self.base_url}/queue")
        for _ in range(20):  # normally there at once
            entry = self.history(prompt_id)
            if entry is not None:
                _raise_if_failed(entry, prompt)
                return entry
            time.sleep(0.1)
        raise ComfyError(f"prompt {prompt_id} finished but {self.base_url}/history/{prompt_id} is empty")


def _try_json(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _raise_if_failed(entry: dict, prompt: dict | None):
    status = entry.get("status") or {}
    if status.get("status_str") == "error" or status.get("completed") is False:
        for mtype, data in status.get("messages") or []:
            if mtype == "execution_error":
                raise execution_error(data, prompt)
            if mtype == "execution_interrupted":
                raise execution_error(data, prompt, interrupted=True)
        raise ComfyError(f"ComfyUI reports the prompt failed (status {status.get('status_str')!r})")


# ----------------------------------------------------------------------------- one run


def output_files(outputs: dict) -> list[tuple[str, dict]]:
    """(node id, {"filename", "subfolder", "type"}) of every file in a history's "outputs"."""
    found = []
    for nid, node_out in (outputs or {}).items():
        if not isinstance(node_out, dict):
            continue
        for items in node_out.values():
            if not isinstance(items, list):
                continue
            for item in items:
                # any "filename" counts, even a bad one: the download skips it with a warning, never silently
                if isinstance(item, dict) and "filename" in item:
                    found.append((str(nid), item))
    return found


@dataclass
class RunResult:
    prompt_id: str
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "success"
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    node_outputs: dict = field(default_factory=dict)


class ProgressPrinter:
    """Turns websocket messages into lines such as ``[12 IASASampler] step 3/4``."""

    def __init__(self, prompt: dict, log: Callable[[str], None] = print):
        self.prompt = prompt
        self.log = log
        self.executed: list[str] = []
        self.cached: list[str] = []
        self._last_pct: dict[str, int] = {}

    def _cls(self, nid) -> str:
        node = self.prompt.get(str(nid)) or self.prompt.get(str(nid).split(":")[-1]) or {}
        return node.get("class_type", "?")

    def __call__(self, mtype: str, data: dict):
        if mtype == "execution_start":
            self.log("started")
        elif mtype == "execution_cached":
            nodes = [str(n) for n in data.get("nodes") or []]
            self.cached = nodes
            if nodes:
                self.log("cached: " + ", ".join(f"{n} ({self._cls(n)})" for n in nodes))
        elif mtype == "executing":
            nid = data.get("display_node") or data.get("node")
            if nid is not None:
                self.executed.append(str(nid))
                self.log(f"executing {nid} ({self._cls(nid)})")
        elif mtype == "progress":
            nid = data.get("node")
            value, total = data.get("value"), data.get("max")
            if nid is None or not isinstance(value, (int, float)) or not total:
                return
            # long bars (tiled decodes, frame loops) print about every 10 %
            pct = int(100 * value / total)
            key = str(nid)
            if total > 20 and value < total and pct // 10 == self._last_pct.get(key, -1) // 10:
                return
            self._last_pct[key] = pct
            self.log(f"[{nid} {self._cls(nid)}] step {value:g}/{total:g}")
        elif mtype == "executed":
            nid = data.get("display_node") or data.get("node")
            files = [_short(i["filename"], 80) for _, i in output_files({str(nid): data.get("output") or {}})]
            if files:
                self.log(f"output of {nid} ({self._cls(nid)}): {', '.join(files)}")


def _checked_destination(nid: str, info: dict, out_dir, taken: list[Path],
                         log: Callable[[str], None]) -> Path | None:
    """Where output ``info`` of node ``nid`` goes under ``out_dir``; None (with a warning) to skip it."""
    what = f"an output of node {nid}"
    try:
        dest, changed = local_path(out_dir, info.get("filename"), info.get("subfolder"))
    except UnsafeName as exc:
        log(f"warning: skipped {what}: {exc}")
        return None
    if dest in taken:  # the same file listed twice, or two names that became the same when made safe
        if changed:
            log(f"warning: skipped {what}: its name {_short(info.get('filename'), 80)!r} made safe is {dest}, "
                "already downloaded")
        return None
    if changed:
        log(f"warning: the server named {what} {_short(info.get('subfolder') or '', 80)!r} / "
            f"{_short(info.get('filename'), 80)!r}; saving it as {dest}")
    return dest


def run_workflow(prompt: dict, server: str = DEFAULT_SERVER, *, sets: Iterable[str] = (),
                 uploads: Iterable = (), out_dir="comfy_outputs", timeout: float | None = None,
                 request_timeout: float = 30.0, log: Callable[[str], None] = print,
                 client: ComfyClient | None = None) -> RunResult:
    """Upload inputs, queue `prompt` (after `sets`), print progress, download the outputs.

    Uploaded files are stored in the server's input folder; if ComfyUI stores one under another
    name, inputs of the prompt naming the original file are pointed at the stored name.
    Raises ComfyError when the server is unreachable, refuses the prompt or the run fails.
    """
    prompt = apply_sets(check_api_prompt(prompt), sets)
    own = client is None
    client = client or ComfyClient(server, timeout=request_timeout)
    t0 = time.perf_counter()
    try:
        for path in uploads:
            stored = client.upload(path)
            name = Path(path).name
            log(f"uploaded {path} -> input/{stored}")
            if stored != name:
                changed = replace_input_value(prompt, name, stored)
                if changed:
                    log(f"  the server stored it as {stored!r}; set {', '.join(changed)} to it")
        client.connect()
        prompt_id = client.queue(prompt)
        log(f"queued prompt {prompt_id} on {client.base_url}")
        ignored = client.last_node_errors
        if ignored:
            log("warning: some outputs will not run:\n" + format_prompt_error({"node_errors": ignored}, prompt))
        printer = ProgressPrinter(prompt, log)
        entry = client.watch(prompt_id, printer, timeout=timeout, prompt=prompt)
        node_outputs = entry.get("outputs") or {}
        paths: list[Path] = []
        for nid, info in output_files(node_outputs):
            dest = _checked_destination(nid, info, out_dir, paths, log)
            if dest is not None:
                paths.append(client.download(info, out_dir))
        seconds = time.perf_counter() - t0
        status = ((entry.get("status") or {}).get("status_str")) or "success"
        result = RunResult(prompt_id, paths, seconds, status, printer.executed, printer.cached, node_outputs)
        ran = len(dict.fromkeys(printer.executed))
        summary = (f"done in {seconds:.1f} s: {ran} node{'s' if ran != 1 else ''} run, {len(printer.cached)} "
                   f"cached, {len(paths)} file{'s' if len(paths) != 1 else ''} downloaded")
        log(summary + (":" if paths else " (no file outputs: does the workflow have a Save node?)"))
        for p in paths:
            log(f"  {p}")
        return result
    finally:
        if own:
            client.close()
