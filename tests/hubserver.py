"""A stand-in HuggingFace hub over loopback, serving repos from local folders.

It speaks the subset of the hub protocol that huggingface_hub 2.4 and our engine use
(FACTS.md), over real HTTP on 127.0.0.1, with the same faults as :mod:`tests.fileserver`.

Quick use::

    with HubServer() as hub:                                   # or the ``hub_server`` fixture
        sha = hub.add_repo("owner/name", folder)               # commit sha computed from the content
        hub.add_repo("owner/gated", folder, gated=True)        # needs a granted token to download
        hub.grant("owner/gated", "hf_ok")                      # that token may download it
        api = HfApi(endpoint=hub.url)
        hub.faults.status("*/unet/*", 503, times=2)            # fault kinds: see tests/fileserver.py
        hub.faults.redirect("*/resolve/*", lambda p: cdn.url_for(...))   # CDN-like cross-host redirect
        hub.stats.served("/owner/name/resolve/<sha>/unet/diffusion_pytorch_model.safetensors")
        hub.stats.auth_headers()                               # Authorization values that reached the hub

Endpoints (``{repo}`` is ``owner/name``; ``{rev}`` a branch name like ``main`` or a commit sha):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: ``id``, ``modelId``, ``sha``,
  ``gated`` (False or "auto"), ``private``, ``library_name``, ``tags``, ``siblings``
  (``[{rfilename}]``; with ``?blobs=true`` also ``size``, ``blobId`` and for LFS files
  ``lfs: {sha256, size, pointerSize}``).  Metadata of gated repos is public, as on the real hub.
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=true``: ``[{type, path, size, oid, lfs: {oid, size,
  pointerSize}}]`` (directories as ``{type: "directory", path, oid, size: 0}``), paged by
  :attr:`HubServer.page_size` with ``Link: <...&cursor=N>; rel="next"``.
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: ``X-Repo-Commit``, ``ETag`` (the sha256 for LFS files,
  else the git blob id), for LFS also ``X-Linked-Etag`` and ``X-Linked-Size``; ``Content-Length``;
  ``Range`` -> 206, past the end -> 416.  Never any Xet header.
- ``GET /api/whoami-v2``: ``{"name": "tester", ...}`` for a valid token, 401 otherwise.

Files count as LFS when their suffix is a weights suffix (.safetensors .bin .ckpt .pt .pth .msgpack .onnx
.h5 .gguf) or they are larger than :attr:`HubServer.lfs_threshold` bytes.

Errors (with ``X-Error-Code`` so huggingface_hub maps them as the real hub does):
unknown or private repo without a valid token -> 401 ``RepoNotFound``; unknown revision -> 404
``RevisionNotFound``; unknown file -> 404 ``EntryNotFound``; gated repo file without a token -> 401
``GatedRepo``, with a token not granted -> 403 ``GatedRepo``; an ``Authorization`` header with an unknown
token -> 401 "Invalid credentials in Authorization header".

Tokens: :attr:`HubServer.valid_tokens` (default ``{"hf_test_token"}``); :meth:`HubServer.grant` adds one and
grants it a gated/private repo.

Faults and stats: ``.faults`` and ``.stats`` exactly as in :mod:`tests.fileserver` (globs match the URL
path without the query, e.g. ``"/owner/name/resolve/*"``).  Status/html faults apply before anything else;
a redirect fault applies after the access checks and carries ``X-Repo-Commit``/``X-Linked-Etag``/
``X-Linked-Size`` like the real hub's CDN redirect.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from tests.fileserver import BaseHandler, LoopbackServer

LFS_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".msgpack", ".onnx", ".h5", ".gguf")


@dataclass(frozen=True)
class HubFile:
    """One file of a commit: where it lives on disk and its hashes."""

    relpath: str
    disk: Path
    size: int
    sha256: str
    git_oid: str
    lfs: bool

    @property
    def etag(self) -> str:
        return f'"{self.sha256 if self.lfs else self.git_oid}"'


@dataclass
class HubRepo:
    repo_id: str
    gated: bool = False
    private: bool = False
    granted: set[str] = field(default_factory=set)
    revisions: dict[str, str] = field(default_factory=dict)  # branch -> commit sha
    commits: dict[str, dict[str, HubFile]] = field(default_factory=dict)

    def commit_for(self, rev: str) -> str | None:
        if rev in self.commits:
            return rev
        return self.revisions.get(rev)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _git_oid(path: Path, size: int) -> str:
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class _HubHandler(BaseHandler):
    owner: "HubServer"

    def do_HEAD(self) -> None:
        self.do_GET()

    # -- access -----------------------------------------------------------------------
    def _token(self) -> str | None:
        auth = self.headers.get("Authorization")
        if auth and auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        return None

    def _deny(self, code: int, error_code: str | None, message: str) -> None:
        headers = {"X-Error-Message": message}
        if error_code:
            headers["X-Error-Code"] = error_code
        self.send_json(code, {"error": message}, headers)

    def _check_token(self) -> bool:
        """False (and answered) when an Authorization header carries an unknown token."""
        if self.headers.get("Authorization") is not None and self._token() not in self.owner.valid_tokens:
            self._deny(401, None, "Invalid credentials in Authorization header")
            return False
        return True

    def _repo(self, repo_id: str) -> HubRepo | None:
        """The repo if it exists and is visible to the caller, else None (answered 401 RepoNotFound)."""
        repo = self.owner.repos.get(repo_id)
        if repo is None or (repo.private and self._token() not in repo.granted):
            self._deny(401, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _commit(self, repo: HubRepo, rev: str) -> str | None:
        sha = repo.commit_for(rev)
        if sha is None:
            self._deny(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return sha

    # -- routing ------------------------------------------------------------------------
    def do_GET(self) -> None:
        path, query = self._record()
        if self.apply_early_faults(path, ("status", "html")):
            return
        if not self._check_token():
            return
        parts = [p for p in path.split("/") if p]
        if parts[:2] == ["api", "whoami-v2"]:
            if self._token() in self.owner.valid_tokens:
                self.send_json(200, {"type": "user", "name": "tester", "auth": {"type": "access_token"}})
            else:
                self._deny(401, None, "Invalid credentials in Authorization header")
            return
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            if not rest:
                return self._model_info(repo_id, "main", query)
            if rest[0] == "revision" and len(rest) >= 2:
                return self._model_info(repo_id, "/".join(rest[1:]), query)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree(repo_id, rest[1], "/".join(rest[2:]), query)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(path, "/".join(parts[:2]), parts[3], "/".join(parts[4:]))
        self.send_json(404, {"error": "not found"})

    def _model_info(self, repo_id: str, rev: str, query: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = self._commit(repo, rev)
        if sha is None:
            return
        blobs = "blobs=true" in query.lower() or "blobs=True" in query
        siblings = []
        for f in sorted(repo.commits[sha].values(), key=lambda f: f.relpath):
            entry: dict = {"rfilename": f.relpath}
            if blobs:
                entry["size"] = f.size
                entry["blobId"] = f.git_oid
                if f.lfs:
                    entry["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
            siblings.append(entry)
        self.send_json(
            200,
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "sha": sha,
                "private": repo.private,
                "gated": "auto" if repo.gated else False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": ["diffusers"],
                "library_name": "diffusers",
                "lastModified": "2026-11-01T00:00:00.000Z",
                "siblings": siblings,
            },
        )

    def _tree(self, repo_id: str, rev: str, sub: str, query: str) -> None:
        repo = self._repo(repo_id)
        if repo is None:
            return
        sha = self._commit(repo, urllib.parse.unquote(rev))
        if sha is None:
            return
        params = urllib.parse.parse_qs(query)
        recursive = params.get("recursive", ["false"])[0].lower() == "true"
        cursor = int(params.get("cursor", ["0"])[0] or 0)
        prefix = f"{sub.strip('/')}/" if sub else ""
        entries: dict[str, dict] = {}
        for f in sorted(repo.commits[sha].values(), key=lambda f: f.relpath):
            if not f.relpath.startswith(prefix):
                continue
            rel = f.relpath[len(prefix) :]
            dirs = rel.split("/")[:-1]
            for i in range(len(dirs)):
                d = prefix + "/".join(dirs[: i + 1])
                if (recursive or i == 0) and d not in entries:
                    entries[d] = {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
            if not recursive and dirs:
                continue
            entry = {"type": "file", "path": f.relpath, "size": f.size, "oid": f.git_oid}
            if f.lfs:
                entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
            entries[f.relpath] = entry
        if sub and not entries:
            self._deny(404, "EntryNotFound", f"{sub} does not exist on {rev}")
            return
        items = sorted(entries.values(), key=lambda e: e["path"])
        page = items[cursor : cursor + self.owner.page_size]
        headers = {}
        if cursor + self.owner.page_size < len(items):
            params["cursor"] = [str(cursor + self.owner.page_size)]
            next_query = urllib.parse.urlencode({k: v[0] for k, v in params.items()})
            base = f"{self.owner.url}/api/models/{repo_id}/tree/{rev}" + (f"/{sub}" if sub else "")
            headers["Link"] = f'<{base}?{next_query}>; rel="next"'
        self.send_json(200, page, headers)

    def _resolve(self, path: str, repo_id: str, rev: str, relpath: str) -> None:
        repo = self.owner.repos.get(repo_id)
        if repo is None or (repo.private and self._token() not in repo.granted):
            self._deny(401, "RepoNotFound", "Repository not found")
            return
        if repo.gated and self._token() not in repo.granted:
            code = 401 if self._token() is None else 403
            self._deny(code, "GatedRepo", f"Access to model {repo_id} is restricted. You must have access to it and be authenticated to access it. Please log in.")
            return
        sha = self._commit(repo, urllib.parse.unquote(rev))
        if sha is None:
            return
        f = repo.commits[sha].get(relpath)
        if f is None:
            self._deny(404, "EntryNotFound", f"{relpath} does not exist on {rev}")
            return
        meta = {"X-Repo-Commit": sha}
        if f.lfs:
            meta["X-Linked-Etag"] = f.etag
            meta["X-Linked-Size"] = str(f.size)
        fault = self.owner.faults.take(self.command, path, ("redirect",))
        if fault is not None:
            self._redirect_meta = meta
            self.answer_fault(fault, path)
            return
        self.send_file(path, f.disk, f.etag, meta)

    def redirect_headers(self, path: str) -> dict[str, str]:
        return dict(getattr(self, "_redirect_meta", {}))


class HubServer(LoopbackServer):
    """The stand-in hub; see the module docstring for endpoints, errors, tokens and faults."""

    handler_class = _HubHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self.repos: dict[str, HubRepo] = {}
        self.valid_tokens: set[str] = {"hf_test_token"}
        self.page_size = 1000
        self.lfs_threshold = 1 << 20

    def add_repo(
        self,
        repo_id: str,
        folder: str | os.PathLike,
        *,
        gated: bool = False,
        private: bool = False,
        revision: str = "main",
        granted: tuple[str, ...] = (),
    ) -> str:
        """Publish every file under ``folder`` as a commit of ``repo_id`` at branch ``revision``.

        Returns the commit sha (sha1 over the paths and sha256s, so equal content gives an equal sha).
        Files are served from ``folder`` as they are on disk: do not change them afterwards (add again).
        Adding again to an existing repo moves the branch to the new commit; old commits stay reachable
        by sha.
        """
        folder = Path(folder)
        files: dict[str, HubFile] = {}
        for p in sorted(folder.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(folder).as_posix()
            size = p.stat().st_size
            lfs = rel.endswith(LFS_SUFFIXES) or size > self.lfs_threshold
            files[rel] = HubFile(rel, p.resolve(), size, _sha256_file(p), _git_oid(p, size), lfs)
        sha = hashlib.sha1(json.dumps(sorted((f.relpath, f.sha256) for f in files.values())).encode()).hexdigest()
        repo = self.repos.get(repo_id) or HubRepo(repo_id)
        repo.gated = gated
        repo.private = private
        repo.granted.update(granted)
        self.valid_tokens.update(granted)
        repo.commits[sha] = files
        repo.revisions[revision] = sha
        self.repos[repo_id] = repo
        return sha

    def grant(self, repo_id: str, token: str) -> None:
        """Let ``token`` (made valid) read the gated or private ``repo_id``."""
        self.valid_tokens.add(token)
        self.repos[repo_id].granted.add(token)

    def file(self, repo_id: str, relpath: str, revision: str = "main") -> HubFile:
        """The :class:`HubFile` of a published file (size, sha256, disk path)."""
        repo = self.repos[repo_id]
        return repo.commits[repo.commit_for(revision)][relpath]

    def resolve_url(self, repo_id: str, relpath: str, revision: str = "main") -> str:
        """The ``/resolve/`` URL of a file (``revision`` used as given, e.g. a branch or a sha)."""
        return f"{self.url}/{repo_id}/resolve/{revision}/{urllib.parse.quote(relpath)}"

    def resolve_path(self, repo_id: str, relpath: str, revision: str = "main") -> str:
        """The URL path (as ``stats`` records it) of a file at the pinned commit of ``revision``."""
        repo = self.repos[repo_id]
        return f"/{repo_id}/resolve/{repo.commit_for(revision)}/{relpath}"
