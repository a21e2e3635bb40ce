"""A small local server that speaks the part of the Hugging Face Hub API huggingface_hub 2.4 uses to push and pull.

Enough for `HfApi.create_repo / create_branch / model_info / list_repo_refs / list_repo_tree / create_commit`,
`hf_hub_download`, `snapshot_download` and `from_pretrained` (including `trust_remote_code` code files) over real
HTTP, without the internet. Every file is uploaded "regular" (inline base64 in the commit), so no LFS or Xet
storage is needed: set HF_HUB_DISABLE_XET=1 in clients.

Storage lives in a folder: per repo a `repo.json` (visibility, branches, pull requests, commit log) and one
snapshot folder per commit. A commit is built in a temp folder and renamed into place before the ref moves, under
one lock, so it is applied completely or not at all.

Auth follows the Hub: `Authorization: Bearer <token>`; a wrong token gets 401 "Invalid credentials in
Authorization header"; writes need a write token and a namespace the token owns (else 403); private repos are
invisible (401 RepoNotFound) without a token.

Failures on purpose, for error-path tests: `hub.fail(method, path_regex, status=500, times=1)` answers an error,
`drop=True` closes the connection without answering (before doing anything), `drop_after=True` does the work and
then drops the connection (a lost answer). `hub.requests` records (method, path, status) of every request; the
token is never stored or logged.

    hub = FakeHub(tmp_path / "hub", token="hf_...")
    hub.start()          # http://127.0.0.1:<free port>
    ...
    hub.stop()
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"


def git_blob_sha(data: bytes) -> str:
    """The git blob id of `data` (what the Hub calls a regular file's oid and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Failure:
    method: str
    pattern: re.Pattern[str]
    status: int | None = None
    drop: bool = False
    drop_after: bool = False
    times: int | None = 1  # None: always
    error_code: str | None = None
    message: str | None = None
    skip: int = 0  # let this many matching requests through first


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


class HubHTTPError(Exception):
    def __init__(self, status: int, message: str, *, error_code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.error_code = status, message, error_code
        self.headers = dict(headers or {})


def _json(status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), dict(headers or {}))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class FakeHub:
    """The server and its state. Thread-safe: the HTTP server runs in a background thread."""

    def __init__(self, root: Path, *, token: str, read_token: str | None = None,
                 namespaces: tuple[str, ...] = ("tester", "tester-org")) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._token = token
        self._read_token = read_token
        self.namespaces = namespaces
        self.requests: list[tuple[str, str, int | str]] = []
        self.unknown_routes: list[tuple[str, str]] = []
        self.failures: list[Failure] = []
        self.lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------------------------------- lifecycle

    def start(self) -> str:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------------------------------ test controls

    def fail(self, method: str, path_regex: str, *, status: int | None = None, drop: bool = False,
             drop_after: bool = False, times: int | None = 1, error_code: str | None = None,
             message: str | None = None, skip: int = 0) -> None:
        """Make matching requests fail: `times` times (None: always), with `status`, or by dropping the connection
        (`drop`: before doing anything; `drop_after`: after doing the work, so the answer is lost). The first
        `skip` matching requests are served normally."""
        with self.lock:
            self.failures.append(Failure(method.upper(), re.compile(path_regex), status, drop, drop_after, times,
                                         error_code, message, skip))

    def clear_failures(self) -> None:
        with self.lock:
            self.failures.clear()

    def count(self, method: str | None = None, path_regex: str | None = None) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.requests
                       if (method is None or m == method.upper()) and (path_regex is None or re.search(path_regex, p)))

    def _take_failure(self, method: str, path: str) -> Failure | None:
        with self.lock:
            for failure in self.failures:
                if failure.method in (method, "*") and failure.pattern.search(path) and failure.times != 0:
                    if failure.skip > 0:
                        failure.skip -= 1
                        continue
                    if failure.times is not None:
                        failure.times -= 1
                    return failure
        return None

    # ------------------------------------------------------------------------------------------- storage

    def _repo_dir(self, repo_id: str) -> Path:
        return self.root / "models" / repo_id

    def repo_exists(self, repo_id: str) -> bool:
        return (self._repo_dir(repo_id) / "repo.json").is_file()

    def repo_state(self, repo_id: str) -> dict[str, Any]:
        return json.loads((self._repo_dir(repo_id) / "repo.json").read_text())

    def _save_state(self, repo_id: str, state: dict[str, Any]) -> None:
        path = self._repo_dir(repo_id) / "repo.json"
        tmp = path.with_name(f".repo.json.{uuid.uuid4().hex}")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, path)

    def _snapshot(self, repo_id: str, sha: str) -> Path:
        return self._repo_dir(repo_id) / "snapshots" / sha

    def resolve(self, repo_id: str, revision: str) -> str:
        """A branch name, refs/pr/N or commit sha -> commit sha (HubHTTPError 404 RevisionNotFound if unknown)."""
        state = self.repo_state(repo_id)
        if revision in state["branches"]:
            return state["branches"][revision]
        if revision.startswith("refs/heads/") and revision[len("refs/heads/"):] in state["branches"]:
            return state["branches"][revision[len("refs/heads/"):]]
        if revision in state["prs"]:
            return state["prs"][revision]
        if re.fullmatch(r"[0-9a-f]{40}", revision) and revision in state["commits"]:
            return revision
        raise HubHTTPError(404, f"Invalid rev id: {revision}", error_code="RevisionNotFound")

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Path -> content of every file of the repo at `revision` (for assertions)."""
        snap = self._snapshot(repo_id, self.resolve(repo_id, revision))
        return {p.relative_to(snap).as_posix(): p.read_bytes() for p in sorted(snap.rglob("*")) if p.is_file()}

    def commits(self, repo_id: str) -> list[dict[str, Any]]:
        return list(self.repo_state(repo_id)["commits"].values())

    def _new_sha(self, *parts: str) -> str:
        return hashlib.sha1(("\0".join(parts) + uuid.uuid4().hex).encode()).hexdigest()

    def create_repo(self, repo_id: str, *, private: bool) -> None:
        """Create a repo with its first commit (.gitattributes), like the Hub does."""
        repo_dir = self._repo_dir(repo_id)
        sha = self._new_sha(repo_id, "initial")
        snap = self._snapshot(repo_id, sha)
        snap.mkdir(parents=True)
        (snap / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
        state = {"id": repo_id, "private": private, "createdAt": _now(), "branches": {"main": sha}, "prs": {},
                 "commits": {sha: {"oid": sha, "parent": None, "title": "initial commit", "description": "",
                                   "ref": "main", "date": _now()}}}
        repo_dir.mkdir(parents=True, exist_ok=True)
        self._save_state(repo_id, state)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    server_version = "FakeHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read hub.requests instead
        pass

    # ---------------------------------------------------------------------------------------- plumbing

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        hub = self.hub
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        failure = hub._take_failure(method, path)
        if failure is not None and failure.drop:
            self._drop(method, path)
            return
        if failure is not None and failure.status is not None:
            reply = self._error(HubHTTPError(failure.status, failure.message or f"Injected failure {failure.status}",
                                             error_code=failure.error_code))
        else:
            try:
                reply = self._route(method, path, query, body)
            except HubHTTPError as err:
                reply = self._error(err)
        if failure is not None and failure.drop_after:
            self._drop(method, path)
            return
        with hub.lock:
            hub.requests.append((method, path, reply.status))
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if "Content-Length" not in reply.headers:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(reply.body)

    def _drop(self, method: str, path: str) -> None:
        with self.hub.lock:
            self.hub.requests.append((method, path, "dropped"))
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _error(self, err: HubHTTPError) -> Reply:
        headers = dict(err.headers)
        headers["X-Error-Message"] = err.message
        if err.error_code:
            headers["X-Error-Code"] = err.error_code
        return _json(err.status, {"error": err.message}, headers)

    # ------------------------------------------------------------------------------------------- auth

    def _auth(self) -> str:
        """'anonymous', 'write', 'read'; raises 401 for a token the Hub does not know."""
        header = self.headers.get("Authorization")
        if not header:
            return "anonymous"
        if header == f"Bearer {self.hub._token}":
            return "write"
        if self.hub._read_token and header == f"Bearer {self.hub._read_token}":
            return "read"
        raise HubHTTPError(401, INVALID_CREDENTIALS)

    def _can_read(self, repo_id: str) -> None:
        auth = self._auth()
        if not self.hub.repo_exists(repo_id):
            raise HubHTTPError(404 if auth != "anonymous" else 401, "Repository not found", error_code="RepoNotFound")
        if self.hub.repo_state(repo_id)["private"] and auth == "anonymous":
            raise HubHTTPError(401, "Repository not found", error_code="RepoNotFound")

    def _can_write(self, repo_id: str) -> None:
        auth = self._auth()
        if auth == "anonymous":
            raise HubHTTPError(401, "You must be authenticated to access this resource")
        self._can_read(repo_id)
        if auth != "write" or repo_id.split("/")[0] not in self.hub.namespaces:
            raise HubHTTPError(403, f"You don't have the rights to write to {repo_id}")

    # ------------------------------------------------------------------------------------------ routes

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: bytes) -> Reply:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if method == "POST" and parts == ["api", "repos", "create"]:
            return self._create_repo(json.loads(body or b"{}"))
        if method == "POST" and parts == ["api", "validate-yaml"]:
            return self._validate_yaml(json.loads(body or b"{}"))
        if method == "GET" and parts == ["api", "agent-harnesses"]:  # huggingface_hub's user-agent registry
            return _json(200, {"standardEnvVars": [], "harnesses": {}})
        if method == "GET" and parts == ["api", "whoami-v2"]:
            auth = self._auth()
            if auth == "anonymous":
                raise HubHTTPError(401, INVALID_CREDENTIALS)
            return _json(200, {"type": "user", "name": self.hub.namespaces[0],
                               "orgs": [{"name": n} for n in self.hub.namespaces[1:]],
                               "auth": {"accessToken": {"role": auth}}})
        if len(parts) >= 4 and parts[:2] == ["api", "models"]:
            repo_id, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            if method == "GET" and not rest:
                return self._model_info(repo_id, "main")
            if method == "GET" and len(rest) == 2 and rest[0] == "revision":
                return self._model_info(repo_id, rest[1])
            if method == "GET" and rest == ["refs"]:
                return self._refs(repo_id, include_prs=bool(query.get("include_prs")))
            if method == "POST" and len(rest) == 2 and rest[0] == "branch":
                return self._create_branch(repo_id, rest[1], json.loads(body or b"{}"))
            if method == "POST" and len(rest) == 2 and rest[0] == "preupload":
                return self._preupload(repo_id, rest[1], json.loads(body or b"{}"))
            if method == "POST" and len(rest) == 2 and rest[0] == "commit":
                return self._commit(repo_id, rest[1], body, create_pr=query.get("create_pr") == ["1"])
            if method == "GET" and len(rest) >= 2 and rest[0] == "tree":
                recursive = (query.get("recursive") or ["false"])[0].lower() in ("1", "true")
                return self._tree(repo_id, rest[1], "/".join(rest[2:]), recursive=recursive)
            if method == "POST" and len(rest) == 2 and rest[0] == "paths-info":
                return self._paths_info(repo_id, rest[1], body)
        if method in ("GET", "HEAD") and len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        with self.hub.lock:
            self.hub.unknown_routes.append((method, path))
        raise HubHTTPError(404, f"Fake hub: no route for {method} {path}")

    def _create_repo(self, payload: dict[str, Any]) -> Reply:
        auth = self._auth()
        if auth == "anonymous":
            raise HubHTTPError(401, "You must be authenticated to access this resource")
        name, namespace = payload.get("name"), payload.get("organization")
        if (payload.get("type") or "model") != "model":
            raise HubHTTPError(400, "Fake hub: only model repos")
        if not namespace or not name:
            raise HubHTTPError(400, "Fake hub: give organization and name")
        repo_id = f"{namespace}/{name}"
        if auth != "write" or namespace not in self.hub.namespaces:
            raise HubHTTPError(403, f'You don\'t have the rights to create a model under the namespace "{namespace}"')
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if self.hub.repo_exists(repo_id):
                return _json(409, {"error": "You already created this model repo", "url": url},
                             {"X-Error-Message": "You already created this model repo"})
            self.hub.create_repo(repo_id, private=payload.get("visibility") == "private")
        return _json(200, {"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})

    def _validate_yaml(self, payload: dict[str, Any]) -> Reply:
        self._auth()
        content = payload.get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*\n", content, re.DOTALL)
        errors: list[dict[str, str]] = []
        if match:
            try:
                meta = yaml.safe_load(match.group(1))
            except yaml.YAMLError as err:
                meta, errors = None, [{"message": f"YAML: {err}"}]
            if not errors and not isinstance(meta, dict):
                errors.append({"message": "metadata must be a mapping"})
            elif isinstance(meta, dict):
                errors += [{"message": m} for m in _model_index_problems(meta.get("model-index"))]
        if errors:
            return _json(400, {"errors": errors, "warnings": []})
        return _json(200, {"errors": [], "warnings": []})

    def _model_info(self, repo_id: str, revision: str) -> Reply:
        self._can_read(repo_id)
        sha = self.hub.resolve(repo_id, revision)
        state = self.hub.repo_state(repo_id)
        files = self.hub.files(repo_id, sha)
        return _json(200, {
            "_id": uuid.uuid5(uuid.NAMESPACE_URL, repo_id).hex[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": sha, "private": state["private"], "disabled": False,
            "gated": False, "lastModified": state["commits"][sha]["date"], "createdAt": state["createdAt"],
            "tags": [], "library_name": "transformers", "likes": 0, "downloads": 0,
            "siblings": [{"rfilename": p} for p in files],
        })

    def _refs(self, repo_id: str, *, include_prs: bool) -> Reply:
        self._can_read(repo_id)
        state = self.hub.repo_state(repo_id)
        branches = [{"name": n, "ref": f"refs/heads/{n}", "targetCommit": s} for n, s in state["branches"].items()]
        payload: dict[str, Any] = {"branches": branches, "converts": [], "tags": []}
        if include_prs:
            payload["pullRequests"] = [{"name": r.rsplit("/", 1)[-1], "ref": r, "targetCommit": s}
                                       for r, s in state["prs"].items()]
        return _json(200, payload)

    def _create_branch(self, repo_id: str, branch: str, payload: dict[str, Any]) -> Reply:
        self._can_write(repo_id)
        with self.hub.lock:
            state = self.hub.repo_state(repo_id)
            if branch in state["branches"]:
                raise HubHTTPError(409, f"Reference already exists: refs/heads/{branch}")
            state["branches"][branch] = self.hub.resolve(repo_id, payload.get("startingPoint") or "main")
            self.hub._save_state(repo_id, state)
        return _json(200, {})

    def _preupload(self, repo_id: str, revision: str, payload: dict[str, Any]) -> Reply:
        self._can_write(repo_id)
        sha = self.hub.resolve(repo_id, revision)
        snap = self.hub._snapshot(repo_id, sha)
        files = []
        for entry in payload.get("files", []):
            existing = snap / entry["path"]
            files.append({"path": entry["path"], "uploadMode": "regular", "shouldIgnore": False,
                          "oid": git_blob_sha(existing.read_bytes()) if existing.is_file() else None})
        return _json(200, {"files": files, "commitOid": sha})

    def _commit(self, repo_id: str, revision: str, body: bytes, *, create_pr: bool) -> Reply:
        self._can_write(repo_id)
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubHTTPError(400, "First line must be the commit header")
        header = lines[0]["value"]
        if not header.get("summary"):
            raise HubHTTPError(400, "Commit summary is required")
        hub = self.hub
        with hub.lock:  # one commit at a time: check, build, rename, move the ref
            state = hub.repo_state(repo_id)
            head = hub.resolve(repo_id, revision)
            parent = header.get("parentCommit")
            if parent is not None and not create_pr and parent != head:
                raise HubHTTPError(412, "A commit has happened since. Please refresh and try again.")
            base = parent or head
            tmp = hub._repo_dir(repo_id) / "snapshots" / f".tmp-{uuid.uuid4().hex}"
            shutil.copytree(hub._snapshot(repo_id, base), tmp)
            try:
                for op in lines[1:]:
                    key, value = op.get("key"), op.get("value", {})
                    target = _safe_path(tmp, value.get("path", ""))
                    if key == "file":
                        if value.get("encoding") != "base64":
                            raise HubHTTPError(400, "Fake hub: only base64 file content")
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(base64.b64decode(value["content"], validate=True))
                    elif key == "deletedFile":
                        if not target.is_file():
                            raise HubHTTPError(404, "A file with this name doesn't exist", error_code="EntryNotFound")
                        target.unlink()
                    elif key == "deletedFolder":
                        shutil.rmtree(target, ignore_errors=True)
                    elif key == "lfsFile":
                        raise HubHTTPError(400, "Fake hub: LFS is not supported (every file is 'regular')")
                    else:
                        raise HubHTTPError(400, f"Unknown commit operation {key!r}")
                sha = hub._new_sha(repo_id, base, header["summary"])
                os.rename(tmp, hub._snapshot(repo_id, sha))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            if create_pr:
                number = len(state["prs"]) + 1
                ref = f"refs/pr/{number}"
                state["prs"][ref] = sha
            else:
                ref = revision
                if revision in state["prs"]:
                    state["prs"][revision] = sha
                else:
                    state["branches"][revision.removeprefix("refs/heads/")] = sha
            state["commits"][sha] = {"oid": sha, "parent": base, "title": header["summary"],
                                     "description": header.get("description", ""), "ref": ref, "date": _now()}
            hub._save_state(repo_id, state)
        reply: dict[str, Any] = {"success": True, "commitOid": sha, "commitUrl": f"{hub.url}/{repo_id}/commit/{sha}",
                                 "hookOutput": ""}
        if create_pr:
            reply["pullRequestUrl"] = f"{hub.url}/{repo_id}/discussions/{number}"
        return _json(200, reply)

    def _entries(self, repo_id: str, sha: str) -> list[dict[str, Any]]:
        files = self.hub.files(repo_id, sha)
        folders = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        entries = [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f}
                   for f in folders]
        entries += [{"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": p}
                    for p, data in files.items()]
        return entries

    def _tree(self, repo_id: str, revision: str, folder: str, *, recursive: bool) -> Reply:
        self._can_read(repo_id)
        sha = self.hub.resolve(repo_id, revision)
        entries = self._entries(repo_id, sha)
        if folder and not any(e["path"] == folder and e["type"] == "directory" for e in entries):
            raise HubHTTPError(404, f"{folder} does not exist on {revision}", error_code="EntryNotFound")
        prefix = f"{folder}/" if folder else ""
        out = [e for e in entries if e["path"].startswith(prefix)
               and (recursive or "/" not in e["path"][len(prefix):])]
        return _json(200, out)

    def _paths_info(self, repo_id: str, revision: str, body: bytes) -> Reply:
        self._can_read(repo_id)
        sha = self.hub.resolve(repo_id, revision)
        form = parse_qs(body.decode())
        wanted = set(form.get("paths", []))
        if not wanted and body.strip().startswith(b"{"):
            wanted = set(json.loads(body).get("paths", []))
        return _json(200, [e for e in self._entries(repo_id, sha) if e["path"] in wanted])

    def _resolve(self, repo_id: str, revision: str, filename: str) -> Reply:
        self._can_read(repo_id)
        sha = self.hub.resolve(repo_id, revision)
        target = _safe_path(self.hub._snapshot(repo_id, sha), filename)
        if not target.is_file():
            raise HubHTTPError(404, "Entry not found", error_code="EntryNotFound", headers={"X-Repo-Commit": sha})
        data = target.read_bytes()
        return Reply(200, data, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_sha(data)}"',
                                 "Content-Length": str(len(data)), "Accept-Ranges": "bytes"},
                     content_type="application/octet-stream")


def _safe_path(root: Path, relative: str) -> Path:
    if not relative or relative.startswith("/") or any(part in ("", "..", ".") for part in relative.split("/")):
        raise HubHTTPError(400, f"Invalid path {relative!r}")
    return root / relative


def _model_index_problems(model_index: Any) -> list[str]:
    """The Hub's model-index checks that matter here: the structure `ModelCard` writes."""
    if model_index is None:
        return []
    problems = []
    if not isinstance(model_index, list) or not model_index:
        return ["model-index must be a non-empty list"]
    for model in model_index:
        if not isinstance(model, dict) or not isinstance(model.get("name"), str):
            problems.append("model-index[].name must be a string")
            continue
        for result in model.get("results", []):
            if not isinstance(result.get("task", {}).get("type"), str):
                problems.append("model-index[].results[].task.type is required")
            dataset = result.get("dataset", {})
            if not isinstance(dataset.get("type"), str) or not isinstance(dataset.get("name"), str):
                problems.append("model-index[].results[].dataset.type and .name are required")
            for metric in result.get("metrics", []):
                if not isinstance(metric.get("type"), str) or "value" not in metric:
                    problems.append("model-index[].results[].metrics[] need type and value")
    return problems
