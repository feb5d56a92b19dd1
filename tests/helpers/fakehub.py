"""A small fake Hugging Face Hub on loopback, for publishing tests: the routes `huggingface_hub` and `datasets` use.

Repos live in memory (one snapshot of {path: bytes} per commit). It serves create_repo, upload_folder / create_commit
(preupload, LFS batch + upload + verify, NDJSON commit), repo info, tree listing, paths-info and resolve (HEAD, GET,
Range), which is enough for `HfApi.upload_folder`, `push_to_hub`, `hf_hub_download` and `load_dataset("user/name")`.
It is not the Hub: no auth scopes (any token reads a private repo; no token gets 401 RepoNotFound), no branches other
than "main", no xet (set HF_HUB_DISABLE_XET=1).

Clients read HF_ENDPOINT=hub.url at import time (run them in a subprocess with `hub.env()`); `datasets` must also be
told `datasets.config.USE_PARQUET_EXPORT = False`, or it asks `datasets-server.<endpoint host>` for exported infos.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".jpg", ".jpeg", ".safetensors", ".bin", ".pt", ".gz", ".zip")
REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)  # (sha, snapshot), oldest first
    lfs_paths: set[str] = field(default_factory=set)

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]] | None:
        if revision == "main":
            return self.commits[-1]
        return next((c for c in self.commits if c[0] == revision), None)


class FakeHub:
    """`with FakeHub() as hub:` serves on http://127.0.0.1:<ephemeral port>; `hub.requests` logs (method, path)."""

    def __init__(self, user: str = "user"):
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs: dict[str, bytes] = {}  # sha256 -> bytes
        self.requests: list[tuple[str, str]] = []
        self.auth_headers: list[str | None] = []
        self.errors: list[str] = []
        self.range_requests: list[str] = []  # Range headers answered with 206  # exceptions raised by route handlers (answered with 500)
        self.lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeHub":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, token: str) -> dict[str, str]:
        """Environment for a client process that talks to this hub (merge into os.environ; drop HF_HUB_OFFLINE)."""
        return {"HF_ENDPOINT": self.url, "HF_TOKEN": token, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HUB_ETAG_TIMEOUT": "10"}

    def files(self, repo_id: str, repo_type: str = "dataset") -> dict[str, bytes]:
        """The files at the head of main."""
        return dict(self.repos[(repo_type, repo_id)].commits[-1][1])

    def create(self, repo_type: str, repo_id: str, private: bool) -> bool:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                return False
            repo = Repo(repo_type, repo_id, private)
            repo.commits.append((hashlib.sha1(f"init {repo_id}".encode()).hexdigest(), {}))
            self.repos[(repo_type, repo_id)] = repo
            return True

    def add_files(self, repo_type: str, repo_id: str, files: dict[str, bytes], private: bool = False) -> None:
        """Create a repo (if needed) holding `files`, as one commit: seeds a repo without a client upload."""
        self.create(repo_type, repo_id, private)
        ops = [{"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode()}} for path, data in files.items()]
        self.commit(self.repos[(repo_type, repo_id)], ops, "seed")

    def commit(self, repo: Repo, ops: list[dict], summary: str) -> str:
        with self.lock:
            parent_sha, files = repo.commits[-1]
            files = dict(files)
            for op in ops:
                key, value = op["key"], op["value"]
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                    repo.lfs_paths.discard(value["path"])
                elif key == "lfsFile":
                    if value["oid"] not in self.lfs:
                        raise KeyError(f"LFS object {value['oid']} was never uploaded")
                    files[value["path"]] = self.lfs[value["oid"]]
                    repo.lfs_paths.add(value["path"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            sha = hashlib.sha1(f"{parent_sha} {summary} {time.time_ns()}".encode()).hexdigest()
            repo.commits.append((sha, files))
            return sha


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    fake: FakeHub

    def log_message(self, *args) -> None:  # quiet
        pass

    # --- plumbing ---
    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes = b"", ctype: str = "application/json", headers: dict | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, obj, status: int = 200, headers: dict | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers=headers)

    def _error(self, status: int, code: str | None, message: str, head: bool = False) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message} if code else {"X-Error-Message": message}
        self._send(status, json.dumps({"error": message}).encode(), headers=headers, head=head)

    def _repo(self, kind: str, repo_id: str, head: bool = False) -> Repo | None:
        repo = self.fake.repos.get((TYPES.get(kind, kind), repo_id))
        if repo is None:
            self._error(404, "RepoNotFound", f"Repository not found: {repo_id}", head=head)
        elif repo.private and not self.headers.get("Authorization"):  # as the Hub: a private repo is invisible without a token
            self._error(401, "RepoNotFound", f"Repository not found: {repo_id}", head=head)
            return None
        return repo

    def _snapshot(self, repo: Repo, revision: str, head: bool = False):
        snap = repo.snapshot(unquote(revision or "main"))
        if snap is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}", head=head)
        return snap

    def _entry(self, repo: Repo, path: str, data: bytes | None, expand: bool) -> dict:
        if data is None:
            return {"type": "directory", "path": path, "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0}
        entry = {"type": "file", "path": path, "size": len(data), "oid": git_blob_oid(data)}
        if path in repo.lfs_paths:
            entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return entry

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = unquote(url.path), parse_qs(url.query)
        self.fake.requests.append((method, url.path))
        self.fake.auth_headers.append(self.headers.get("Authorization"))
        for verb, pattern, handler in ROUTES:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                try:
                    return handler(self, query=query, **match.groupdict())
                except Exception as err:  # a bug in the fake: answer 500 and keep it for the test to see
                    self.fake.errors.append(f"{method} {path}: {type(err).__name__}: {err}")
                    return self._error(500, None, f"fake hub error: {err}", head=method == "HEAD")
        self._body()
        self._error(404, None, f"fake hub: no route for {method} {path}")

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # --- routes ---
    def whoami(self, query):
        self._json({"type": "user", "name": self.fake.user, "orgs": [], "auth": {"type": "access_token"}})

    def validate_yaml(self, query):
        """Parses the card's YAML block; checks the few keys whose shape the Hub enforces and we rely on."""
        import yaml

        content = json.loads(self._body())["content"]
        errors = []
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as err:
            meta, errors = {}, [{"message": f"YAML does not parse: {err}"}]
        if not isinstance(meta, dict):
            errors.append({"message": "metadata must be a mapping"})
        elif not all(isinstance(c, dict) and "config_name" in c for c in meta.get("configs", [])):
            errors.append({"message": "configs must be a list of mappings with config_name"})
        self._json({"errors": errors, "warnings": []}, status=400 if errors else 200)

    def create_repo(self, query):
        payload = json.loads(self._body() or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.fake.user}/{payload['name']}"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.fake.url}/{prefix}{repo_id}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        if not self.fake.create(repo_type, repo_id, private):
            return self._json({"error": "You already created this repo", "url": url}, status=409)
        self._json({"url": url, "name": repo_id})

    def repo_info(self, query, kind, repo, revision="main"):
        r = self._repo(kind, repo)
        if r and (snap := self._snapshot(r, revision)):
            self._json({"id": repo, "author": repo.split("/")[0], "sha": snap[0], "private": r.private, "tags": [],
                        "lastModified": "2026-01-01T00:00:00.000Z",
                        "siblings": [{"rfilename": p} for p in sorted(snap[1])],
                        "disabled": False, "gated": False, "downloads": 0, "likes": 0})

    def preupload(self, query, kind, repo, revision):
        payload = json.loads(self._body())
        if self._repo(kind, repo):
            files = [{"path": f["path"], "uploadMode": "lfs" if f["path"].lower().endswith(LFS_SUFFIXES) else "regular",
                      "shouldIgnore": False} for f in payload["files"]]
            self._json({"files": files, "commitOid": self.fake.repos[(TYPES[kind], repo)].commits[-1][0]})

    def lfs_batch(self, query, prefix, repo):
        payload = json.loads(self._body())
        objects = []
        for obj in payload["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.fake.lfs:
                entry["actions"] = {"upload": {"href": f"{self.fake.url}/fake-lfs/{obj['oid']}"},
                                    "verify": {"href": f"{self.fake.url}/fake-lfs-verify"}}
            objects.append(entry)
        self._send(200, json.dumps({"transfer": "basic", "objects": objects}).encode(), "application/vnd.git-lfs+json")

    def lfs_upload(self, query, oid):
        data = self._body()
        if hashlib.sha256(data).hexdigest() != oid:
            return self._error(400, None, "LFS upload: sha256 of the body does not match the oid")
        self.fake.lfs[oid] = data
        self._send(200)

    def lfs_verify(self, query):
        payload = json.loads(self._body())
        if payload["oid"] not in self.fake.lfs:
            return self._error(404, None, "LFS object not found")
        self._json({"ok": True})

    def commit(self, query, kind, repo, revision):
        lines = [json.loads(line) for line in self._body().decode().splitlines() if line.strip()]
        r = self._repo(kind, repo)
        if not r:
            return
        header = next((line["value"] for line in lines if line["key"] == "header"), {})
        try:
            sha = self.fake.commit(r, [line for line in lines if line["key"] != "header"], header.get("summary", ""))
        except KeyError as err:
            return self._error(422, None, str(err))
        prefix = "" if r.repo_type == "model" else f"{r.repo_type}s/"
        self._json({"commitUrl": f"{self.fake.url}/{prefix}{repo}/commit/{sha}", "commitOid": sha,
                    "success": True, "pullRequestUrl": None})

    def tree(self, query, kind, repo, revision, path=""):
        r = self._repo(kind, repo)
        snap = r and self._snapshot(r, revision)
        if not snap:
            return
        path = (path or "").strip("/")
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in snap[1]):
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}")
        recursive = query.get("recursive", ["false"])[0].lower() == "true"
        entries, folders = [], set()
        for p, data in sorted(snap[1].items()):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            for depth in range(1, len(parts) if recursive else min(2, len(parts))):
                folders.add(prefix + "/".join(parts[:depth]))
            if recursive or len(parts) == 1:
                entries.append(self._entry(r, p, data, False))
        self._json([self._entry(r, f, None, False) for f in sorted(folders)] + entries)

    def paths_info(self, query, kind, repo, revision):
        form = parse_qs(self._body().decode())
        r = self._repo(kind, repo)
        snap = r and self._snapshot(r, revision)
        if not snap:
            return
        out = []
        for p in form.get("paths", []):
            p = p.strip("/")
            if p in snap[1]:
                out.append(self._entry(r, p, snap[1][p], False))
            elif any(q.startswith(p + "/") for q in snap[1]):
                out.append(self._entry(r, p, None, False))
        self._json(out)

    def resolve(self, query, prefix, repo, revision, path, head=False):
        kind = {"datasets/": "datasets", "spaces/": "spaces"}.get(prefix or "", "models")
        r = self._repo(kind, repo, head=head)
        snap = r and self._snapshot(r, revision, head=head)
        if not snap:
            return
        data = snap[1].get(path)
        if data is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on {revision}", head=head)
        etag = hashlib.sha256(data).hexdigest() if path in r.lfs_paths else git_blob_oid(data)
        headers = {"X-Repo-Commit": snap[0], "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if path in r.lfs_paths:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(len(data))})
        status, body = 200, data
        if m := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            start = int(m[1]) if m[1] else max(len(data) - int(m[2]), 0)
            end = int(m[2]) if m[1] and m[2] else len(data) - 1
            end = min(end, len(data) - 1)
            status, body = 206, data[start:end + 1]
            self.fake.range_requests.append(self.headers["Range"])
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(status, body, "application/octet-stream", headers, head=head)

    def resolve_head(self, query, **kw):
        self.resolve(query, head=True, **kw)


ROUTES = [
    ("GET", r"/api/whoami-v2", _Handler.whoami),
    ("POST", r"/api/repos/create", _Handler.create_repo),
    ("POST", r"/api/validate-yaml", _Handler.validate_yaml),
    ("GET", rf"/api/(?P<kind>models|datasets|spaces)/{REPO}(?:/revision/(?P<revision>[^/]+))?", _Handler.repo_info),
    ("POST", rf"/api/(?P<kind>models|datasets|spaces)/{REPO}/preupload/(?P<revision>[^/]+)", _Handler.preupload),
    ("POST", rf"/api/(?P<kind>models|datasets|spaces)/{REPO}/commit/(?P<revision>[^/]+)", _Handler.commit),
    ("GET", rf"/api/(?P<kind>models|datasets|spaces)/{REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?", _Handler.tree),
    ("POST", rf"/api/(?P<kind>models|datasets|spaces)/{REPO}/paths-info/(?P<revision>[^/]+)", _Handler.paths_info),
    ("POST", rf"/(?P<prefix>datasets/|spaces/)?{REPO}\.git/info/lfs/objects/batch", _Handler.lfs_batch),
    ("PUT", r"/fake-lfs/(?P<oid>[0-9a-f]{64})", _Handler.lfs_upload),
    ("POST", r"/fake-lfs-verify", _Handler.lfs_verify),
    ("GET", rf"/(?P<prefix>datasets/|spaces/)?{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", _Handler.resolve),
    ("HEAD", rf"/(?P<prefix>datasets/|spaces/)?{REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)", _Handler.resolve_head),
]
