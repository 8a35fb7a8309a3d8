"""The web model manager: a Starlette app over the same core as the form and the headless installer.

The page (``static/``) and scripts talk to a JSON API (docs/web.md).  Installs
and conversions run as plans in the worker (:func:`install.worker.start_install`);
a pump thread turns the worker's events into a numbered log that ``GET
/api/events`` streams as Server-Sent Events.  Edits, deletes and "make default"
are quick registry transactions done in the request.

Security, enforced by :class:`Guard` on every request (static files and the
event stream included):

* the ``Host`` header must name the bound address, ``localhost`` or
  ``127.0.0.1`` (a DNS-rebinding page sends its own host name): else 403;
* the session token must come as ``?token=`` (then it is stored in an HttpOnly,
  SameSite=Strict cookie), the cookie, or ``Authorization: Bearer``:
  missing 401, wrong 403, and nothing runs;
* requests that change state (anything but GET/HEAD) with an ``Origin`` other
  than our own, or that a browser marks as cross-origin (``Sec-Fetch-Site``),
  are refused (403); bodies must be JSON (415), which a plain HTML form cannot send;
* paths typed into the page are only listed (names, kinds, sizes), never read back;
  purges delete only inside ``ROOT/models`` (:func:`root.registry.purge_model_files`).

This module imports Starlette at import time: only the ``web`` subcommand imports it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import parse_qs, urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from invokeai_model_install.errors import (
    ConversionError,
    InstallerError,
    NameClashError,
    RegistryLockedError,
    UnknownModelError,
    UsageError,
)
from invokeai_model_install.install.plan import InstallPlan
from invokeai_model_install.root.layout import RootLayout
from invokeai_model_install.net.settings import DownloadSettings

STATIC_DIR = Path(__file__).with_name("static")
COOKIE = "iami_token"
#: The most log entries kept for late subscribers (older ones are dropped).
LOG_LIMIT = 5000
SAFE_METHODS = ("GET", "HEAD")


class ApiError(Exception):
    """An error answered as ``{"error": one line, "message", "hint"}`` with ``status``."""

    def __init__(self, status: int, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.hint = status, message, hint


def _error_response(status: int, message: str, hint: str = "") -> JSONResponse:
    line = " ".join((f"{message} ({hint})" if hint else message).split())
    return JSONResponse({"error": line, "message": message, "hint": hint}, status_code=status)


def _event_dict(event: Any) -> dict[str, Any]:
    data = dataclasses.asdict(event)
    data["type"] = type(event).__name__
    return data


# --- the running job ------------------------------------------------------------------------


class Job:
    """One plan started from the page (an install or a conversion) and what is known of its items."""

    def __init__(self, job_id: int, kind: str, handle: Any) -> None:
        self.id = job_id
        self.kind = kind
        self.handle = handle
        self.items: dict[str, dict[str, Any]] = {}
        self.question: Optional[dict[str, Any]] = None
        self.running = True
        self.cancelled = False
        self.result: Optional[dict[str, Any]] = None
        self.started = time.time()

    def item(self, item_id: str, label: str = "") -> dict[str, Any]:
        if item_id not in self.items:
            self.items[item_id] = {"id": item_id, "label": label or item_id, "status": "waiting", "stage": "", "detail": "",
                                   "files": {}, "error": "", "message": "", "name": "", "notes": []}
        return self.items[item_id]

    def apply(self, ev: dict[str, Any]) -> Optional[dict[str, Any]]:
        """Update the item snapshot with one event; returns the item touched (or None)."""
        kind = ev["type"]
        if kind == "PlanStarted":
            for item_id, label in zip(ev["items"], ev["labels"]):
                self.item(item_id, label)
            return None
        item_id = ev.get("item") or ""
        if not item_id:
            return None
        it = self.item(item_id)
        if kind == "ItemStarted":
            it["status"] = "running"
            it["label"] = ev["label"] or it["label"]
        elif kind == "StageChanged":
            it["stage"], it["detail"] = ev["stage"], ev["detail"]
        elif kind == "FileStarted":
            it["files"][ev["name"]] = {"name": ev["name"], "done": ev["resumed_from"], "total": ev["total"], "speed": 0.0,
                                       "finished": False}
        elif kind == "FileProgress":
            f = it["files"].setdefault(ev["name"], {"name": ev["name"], "finished": False})
            f.update(done=ev["done"], total=ev["total"], speed=ev["speed"])
        elif kind == "FileFinished":
            f = it["files"].setdefault(ev["name"], {"name": ev["name"]})
            f.update(done=ev["size"], total=ev["size"], speed=0.0, finished=True)
        elif kind == "ItemRegistered":
            it.update(status="installed", name=ev["name"], stage="")
        elif kind == "ItemRemoved":
            it.update(status="removed", name=ev["name"], stage="")
        elif kind == "ItemSkipped":
            it.update(status="skipped", message=ev["reason"], stage="")
        elif kind == "ItemFailed":
            text = f"{ev['message']} ({ev['hint']})" if ev["hint"] else ev["message"]
            it.update(status="failed", error=" ".join(text.split()), stage="")
        elif kind == "ItemNote":
            it["notes"].append(ev["message"])
        elif kind == "QuestionAsked":
            it["stage"], it["detail"] = "question", "waiting for your answer"
        return it

    def snapshot(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "running": self.running, "cancelled": self.cancelled,
                "question": self.question, "items": list(self.items.values()), "result": self.result}


class WebState:
    """Everything the app shares between requests: the root, the token, the job and the event log."""

    def __init__(self, layout: RootLayout, *, token: str, host: str = "127.0.0.1", port: int = 9090,
                 catalog_path: Path | None = None, worker_mode: str | None = None, settings: DownloadSettings | None = None) -> None:
        self.layout = layout
        self.token = token
        self.host = host
        self.port = port
        self.catalog_path = catalog_path
        self.worker_mode = worker_mode or os.environ.get("INVOKEAI_INSTALL_WORKER", "process")
        self.settings = settings
        self.lock = threading.RLock()
        self.job: Optional[Job] = None
        self.jobs_started = 0
        self.log: list[tuple[int, dict[str, Any]]] = []
        self.seq = 0
        self.stopping = threading.Event()
        self._pump: Optional[threading.Thread] = None
        self._allowed: Optional[set[str]] = None

    # --- allowed hosts and origins ---

    def allowed_hostnames(self) -> set[str]:
        """Names a request's Host may use: the bound address, localhost, 127.0.0.1 (and, for a wildcard
        bind such as 0.0.0.0, this machine's own name and addresses)."""
        if self._allowed is None:
            names = {"localhost", "127.0.0.1", self.host.lower().strip("[]")}
            if self.host in ("0.0.0.0", "::"):
                import socket

                try:
                    hostname = socket.gethostname()
                    names |= {hostname.lower(), socket.getfqdn().lower()}
                    names |= {info[4][0] for info in socket.getaddrinfo(hostname, None)}
                except OSError:
                    pass
            self._allowed = names
        return self._allowed

    def host_ok(self, host_header: str) -> bool:
        """True for ``HOST[:PORT]`` naming one of our addresses (and our port when a port is given)."""
        host_header = host_header.strip().lower()
        if not host_header:
            return False
        if host_header.startswith("["):  # [::1]:9090
            name, _, rest = host_header[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            name, _, port = host_header.partition(":")
        if name not in self.allowed_hostnames():
            return False
        if port and port != str(self.port):
            return False
        return True

    def origin_ok(self, origin: str) -> bool:
        parts = urlsplit(origin)
        if parts.scheme != "http" or not parts.hostname:
            return False
        port = parts.port or 80
        return parts.hostname.lower() in self.allowed_hostnames() and port == self.port

    # --- the event log ---

    def publish(self, data: dict[str, Any]) -> None:
        with self.lock:
            self.seq += 1
            data = dict(data, seq=self.seq)
            self.log.append((self.seq, data))
            if len(self.log) > LOG_LIMIT:
                del self.log[: len(self.log) - LOG_LIMIT]

    def entries_after(self, seq: int) -> list[dict[str, Any]]:
        with self.lock:
            if not self.log or self.log[-1][0] <= seq:
                return []
            return [d for s, d in self.log if s > seq]

    # --- jobs ---

    def busy(self) -> bool:
        return self.job is not None and self.job.running

    def start_job(self, plan: InstallPlan, kind: str) -> Job:
        from invokeai_model_install.install import worker

        with self.lock:
            if self.busy():
                raise ApiError(409, "another install or conversion is running", "wait for it to finish or cancel it")
            if self.stopping.is_set():
                raise ApiError(503, "the model manager is stopping")
            self.layout.models_dir.mkdir(parents=True, exist_ok=True)
            handle = worker.start_install(plan, self.layout, settings=self.settings, catalog_path=self.catalog_path,
                                          mode=self.worker_mode)
            self.jobs_started += 1
            job = Job(self.jobs_started, kind, handle)
            self.job = job
            self.publish({"type": "JobStarted", "job": job.snapshot()})
            self._pump = threading.Thread(target=self._run_pump, args=(job,), name="web-event-pump", daemon=True)
            self._pump.start()
            return job

    def _run_pump(self, job: Job) -> None:
        from invokeai_model_install.events import QuestionAsked

        handle = job.handle
        while True:
            event = handle.poll(0.1)
            if event is None:
                if handle.done and handle.poll(0) is None:
                    break
                continue
            ev = _event_dict(event)
            with self.lock:
                if isinstance(event, QuestionAsked):
                    job.question = {"qid": event.qid, "kind": event.kind, "prompt": event.prompt, "item": event.item,
                                    "choices": list(event.choices), "labels": list(event.labels)}
                touched = job.apply(ev)
                self.publish({"type": "event", "job_id": job.id, "event": ev, "item": dict(touched) if touched else None,
                              "question": job.question})
        try:
            result = handle.join(timeout=30)
            summary = result.to_json()
        except Exception as exc:  # never leave the page waiting
            summary = {"ok": False, "cancelled": job.cancelled, "error": f"{type(exc).__name__}: {exc}", "items": []}
        with self.lock:
            job.running = False
            job.question = None
            job.result = summary
            for it in job.items.values():
                if it["status"] in ("waiting", "running"):
                    it["status"] = "failed"
                    it["error"] = it["error"] or ("cancelled" if job.cancelled else (summary.get("error") or "not finished"))
            self.publish({"type": "JobFinished", "job": job.snapshot()})
            self.publish({"type": "ModelsChanged"})

    def answer(self, qid: str, choice: str) -> None:
        with self.lock:
            job = self.job
            q = job.question if job is not None else None
            if q is None or q["qid"] != qid:
                raise ApiError(409, f"no pending question {qid!r}", "the question was answered or its install ended")
            if choice not in q["choices"]:
                raise ApiError(400, f"{choice!r} is not an answer to this question", "one of: " + ", ".join(q["choices"]))
            job.handle.answer(qid, choice)
            job.question = None
            self.publish({"type": "QuestionAnswered", "qid": qid, "choice": choice, "job_id": job.id})

    def cancel(self) -> bool:
        with self.lock:
            job = self.job
            if job is None or not job.running:
                return False
            job.cancelled = True
            job.handle.cancel()
            self.publish({"type": "CancelRequested", "job_id": job.id})
            return True

    def shutdown(self, wait: float = 20.0) -> bool:
        """Stop streams; cancel a running job (partial files kept) and wait for it.  True when one was cancelled."""
        self.stopping.set()
        cancelled = self.cancel()
        job = self.job
        pump = self._pump
        if job is not None and pump is not None:
            pump.join(timeout=wait)
            if pump.is_alive():
                try:
                    job.handle.terminate()
                except Exception:
                    pass
        return cancelled


# --- the guard (pure ASGI middleware: applies to streams and static files too) -----------------


class Guard:
    """Host check, session token, same-origin rule for state changes; security headers on every answer."""

    HEADERS = [
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        (b"x-frame-options", b"DENY"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"no-referrer"),
        (b"cache-control", b"no-store"),
        (b"cross-origin-resource-policy", b"same-origin"),
    ]

    def __init__(self, app: Any, state: WebState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal, set_cookie = self._check(scope, headers)
        if refusal is not None:
            await self._send_guarded(refusal, scope, receive, send, set_cookie=False)
            return
        await self._send_guarded(self.app, scope, receive, send, set_cookie=set_cookie)

    def _check(self, scope: dict, headers: dict[str, str]) -> tuple[Optional[Response], bool]:
        state = self.state
        if not state.host_ok(headers.get("host", "")):
            return _error_response(403, f"refused: Host {headers.get('host', '')!r} is not this model manager's address",
                                   f"open the address printed at start, http://127.0.0.1:{state.port}/?token=..."), False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given: Optional[str] = None
        from_query = False
        if query.get("token"):
            given, from_query = query["token"][0], True
        elif headers.get("authorization", "").lower().startswith("bearer "):
            given = headers["authorization"][7:].strip()
        else:
            given = _cookie(headers.get("cookie", ""), COOKIE)
        if not given:
            return _error_response(401, "a session token is needed",
                                   "open the address that `invokeai-model-install web` printed; it carries ?token=..."), False
        if not hmac.compare_digest(given.encode("utf-8", "replace"), state.token.encode("utf-8")):
            return _error_response(403, "wrong session token", "use the address printed by the latest `invokeai-model-install web`"), False
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            if origin is not None and not state.origin_ok(origin):
                return _error_response(403, f"refused: a request from {origin} may not change anything here"), False
            site = headers.get("sec-fetch-site")
            if site is not None and site not in ("same-origin", "none"):
                return _error_response(403, f"refused: a {site} request may not change anything here"), False
        return None, from_query

    async def _send_guarded(self, app: Any, scope: dict, receive: Any, send: Any, *, set_cookie: bool) -> None:
        token = self.state.token

        async def wrapped(message: dict) -> None:
            if message["type"] == "http.response.start":
                hdrs = [h for h in message.get("headers", []) if h[0].lower() not in {k for k, _ in self.HEADERS}]
                hdrs += self.HEADERS
                if set_cookie:
                    hdrs.append((b"set-cookie", f"{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/".encode("latin-1")))
                message = dict(message, headers=hdrs)
            await send(message)

        await app(scope, receive, wrapped)


def _cookie(header: str, name: str) -> Optional[str]:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


# --- helpers -------------------------------------------------------------------------------------


async def _json_body(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if not raw:
        return {}
    if ctype != "application/json":
        raise ApiError(415, "the request body must be JSON (Content-Type: application/json)")
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, f"the request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _opt_str(data: dict[str, Any], key: str) -> Optional[str]:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, f"{key!r} must be a string")
    return value


def _opt_bool(data: dict[str, Any], key: str, default: Optional[bool] = False) -> Optional[bool]:
    value = data.get(key, default)
    if value is None or isinstance(value, bool):
        return value
    raise ApiError(400, f"{key!r} must be true or false")


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, f"{key!r} must be a list of strings")
    return [v.strip() for v in value if v.strip()]


#: The fields ``POST /api/install`` takes; anything else is refused (a misspelt ``inplace`` must not copy silently).
INSTALL_FIELDS = ("items", "starters", "convert", "in_place", "prediction_type", "scan_dir", "autoscan")
#: The add screen's two labels (static/index.html), named by the refusal of both at once.
IN_PLACE_LABEL = "Register local files and folders where they are (no copy)"
CONVERT_LABEL = "Convert single-file checkpoints to diffusers"


def _known_fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(map(str, unknown))}", "accepted: " + ", ".join(allowed))


def _expand(text: str) -> Path:
    return Path(os.path.expanduser(text.strip())).absolute()


# --- endpoints -------------------------------------------------------------------------------------


def create_app(state: WebState) -> Any:
    """The ASGI app (Starlette inside :class:`Guard`)."""
    from invokeai_model_install.app.web import models_api as api

    def handler(fn):
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except ApiError as err:
                return _error_response(err.status, err.message, err.hint)
            except UnknownModelError as err:
                return _error_response(404, err.message, err.hint)
            except (UsageError, ConversionError) as err:
                return _error_response(400, err.message, err.hint)
            except NameClashError as err:
                return _error_response(409, err.message, err.hint)
            except RegistryLockedError as err:
                return _error_response(423, err.message, err.hint)
            except InstallerError as err:
                return _error_response(500, err.message, err.hint)
            except OSError as err:  # e.g. a read-only root: one line naming the path, never a traceback
                where = f"{err.filename}: " if err.filename else ""
                return _error_response(500, f"{where}{err.strerror or err}", "check the path and its permissions")

        endpoint.__name__ = fn.__name__
        return endpoint

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    async def get_state(request: Request) -> Response:
        with state.lock:
            job = state.job.snapshot() if state.job is not None else None
            seq = state.seq
        return JSONResponse({"root": str(state.layout.root), "models_yaml": str(state.layout.models_yaml),
                             "models_dir": str(state.layout.models_dir), "autoscan": api.autoscan_folder(state.layout),
                             "busy": state.busy(), "job": job, "seq": seq, "jobs_started": state.jobs_started})

    async def get_models(request: Request) -> Response:
        return JSONResponse({"models": api.list_models(state.layout)})

    async def get_starters(request: Request) -> Response:
        return JSONResponse({"starters": api.list_starters(state.layout, state.catalog_path)})

    async def post_install(request: Request) -> Response:
        data = await _json_body(request)
        _known_fields(data, INSTALL_FIELDS)
        items = _str_list(data, "items")
        starters = _str_list(data, "starters")
        convert = _opt_bool(data, "convert")
        in_place = _opt_bool(data, "in_place")
        if in_place and convert:  # the CLI refuses --in-place --convert, the form both boxes, the same way
            raise ApiError(400, f'"{IN_PLACE_LABEL}" (in_place) and "{CONVERT_LABEL}" (convert) exclude each other: '
                                "conversion writes a diffusers copy",
                           "untick one; a model registered in place can be converted later with its Convert to Diffusers button")
        prediction = _opt_str(data, "prediction_type")
        if prediction not in (None, "epsilon", "v"):
            raise ApiError(400, f"prediction_type {prediction!r} is not epsilon or v")
        scan = _opt_str(data, "scan_dir")
        autoscan = _opt_bool(data, "autoscan", None)
        scan_dir = _expand(scan) if scan and scan.strip() else None
        if scan_dir is not None and not scan_dir.is_dir():
            raise ApiError(400, f"scan folder {scan_dir} is not a folder", "check the path")
        if autoscan and scan_dir is None:
            raise ApiError(400, "autoscan needs a scan folder (scan_dir)")
        if starters:
            known = api.starter_keys(state.catalog_path)
            unknown = [s for s in starters if s not in known]
            if unknown:
                raise ApiError(400, f"not starter models: {', '.join(unknown)}", "see GET /api/starters")
        plan = InstallPlan(install_starters=tuple(dict.fromkeys(starters)), imports=tuple(dict.fromkeys(items)),
                           scan_dir=scan_dir, autoscan=autoscan, convert=bool(convert), in_place=bool(in_place),
                           prediction_type=prediction)
        if plan.is_empty():
            raise ApiError(400, "nothing to install", "give items, starters or a scan folder")
        job = state.start_job(plan, "install")
        return JSONResponse({"job": job.snapshot()}, status_code=202)

    async def events(request: Request) -> Response:
        last = request.headers.get("last-event-id") or request.query_params.get("after") or ""
        after = int(last) if last.isdigit() else None

        async def stream():
            nonlocal after
            with state.lock:
                snap = state.job.snapshot() if state.job is not None else None
                seq_now = state.seq
            if after is None:
                yield _sse(seq_now, {"type": "Snapshot", "job": snap, "seq": seq_now})
                after = seq_now
            idle = 0.0
            while True:
                entries = state.entries_after(after)
                for entry in entries:
                    after = entry["seq"]
                    yield _sse(after, entry)
                if state.stopping.is_set():
                    break
                if entries:
                    idle = 0.0
                else:
                    await asyncio.sleep(0.1)
                    idle += 0.1
                    if idle >= 15:
                        idle = 0.0
                        yield ": keep-alive\n\n"
            yield _sse(after or 0, {"type": "ServerStopping"})

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})

    async def patch_model(request: Request) -> Response:
        name = request.path_params["name"]
        data = await _json_body(request)
        record = api.edit_model(state.layout, name, data)
        state.publish({"type": "ModelsChanged"})
        return JSONResponse({"model": record})

    async def delete_model(request: Request) -> Response:
        name = request.path_params["name"]
        purge = request.query_params.get("purge", "0").lower() in ("1", "true", "yes")
        result = api.delete_model(state.layout, name, purge=purge)
        state.publish({"type": "ModelsChanged"})
        return JSONResponse(result)

    async def convert_model(request: Request) -> Response:
        name = request.path_params["name"]
        data = await _json_body(request)
        _known_fields(data, ("delete_original", "prediction_type"))
        delete_original = bool(_opt_bool(data, "delete_original"))
        prediction = _opt_str(data, "prediction_type")
        if prediction not in (None, "epsilon", "v"):
            raise ApiError(400, f"prediction_type {prediction!r} is not epsilon or v")
        api.check_convertible(state.layout, name)
        plan = InstallPlan(convert_models=(name,), delete_original=delete_original, prediction_type=prediction)
        job = state.start_job(plan, "convert")
        return JSONResponse({"job": job.snapshot()}, status_code=202)

    async def default_model(request: Request) -> Response:
        name = request.path_params["name"]
        api.make_default(state.layout, name)
        state.publish({"type": "ModelsChanged"})
        return JSONResponse({"default": name})

    async def post_scan(request: Request) -> Response:
        data = await _json_body(request)
        _known_fields(data, ("folder",))
        folder = _opt_str(data, "folder")
        if not folder or not folder.strip():
            raise ApiError(400, "give a folder to search")
        return JSONResponse(api.search_folder(state.layout, _expand(folder)))

    async def post_answer(request: Request) -> Response:
        data = await _json_body(request)
        _known_fields(data, ("qid", "choice"))
        qid, choice = _opt_str(data, "qid"), _opt_str(data, "choice")
        if not qid or not choice:
            raise ApiError(400, "give qid and choice")
        state.answer(qid, choice)
        return JSONResponse({"answered": qid, "choice": choice})

    async def post_cancel(request: Request) -> Response:
        if not state.cancel():
            raise ApiError(409, "nothing is running")
        return JSONResponse({"cancelled": True})

    async def complete(request: Request) -> Response:
        return JSONResponse(api.complete_path(request.query_params.get("path", "")))

    routes = [
        Route("/", handler(index), methods=["GET"]),
        Route("/api/state", handler(get_state), methods=["GET"]),
        Route("/api/models", handler(get_models), methods=["GET"]),
        Route("/api/starters", handler(get_starters), methods=["GET"]),
        Route("/api/install", handler(post_install), methods=["POST"]),
        Route("/api/events", handler(events), methods=["GET"]),
        Route("/api/models/{name}", handler(patch_model), methods=["PATCH"]),
        Route("/api/models/{name}", handler(delete_model), methods=["DELETE"]),
        Route("/api/models/{name}/convert", handler(convert_model), methods=["POST"]),
        Route("/api/models/{name}/default", handler(default_model), methods=["POST"]),
        Route("/api/scan", handler(post_scan), methods=["POST"]),
        Route("/api/answer", handler(post_answer), methods=["POST"]),
        Route("/api/cancel", handler(post_cancel), methods=["POST"]),
        Route("/api/complete", handler(complete), methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=str(STATIC_DIR)), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.web = state
    return Guard(app, state)


def _sse(seq: int, data: dict[str, Any]) -> str:
    return f"id: {seq}\ndata: {json.dumps(data, default=str)}\n\n"
