"""A local stand-in for the HuggingFace hub, enough for huggingface_hub's snapshot_download.

The real hub cannot be reached here, so tests point HF_ENDPOINT at this server. It answers what
huggingface_hub 2.4 asks while downloading a snapshot, as the hub does:

- GET  /api/models/<org>/<name>/revision/<revision>: the model info (its commit `sha`, `siblings`);
- GET  /api/models/<org>/<name>/tree/<commit>?recursive=...: the files (size, git oid, LFS sha256);
- HEAD and GET /<org>/<name>/resolve/<revision>/<file>: the file, with X-Repo-Commit and an ETag
  (X-Linked-Etag / X-Linked-Size for LFS files, as the hub sends before its CDN redirect).

Errors carry the hub's X-Error-Code header, which is what huggingface_hub turns into its
exceptions: an unknown repository is 404 RepoNotFound, an unknown revision 404
RevisionNotFound, and a gated repository answers its metadata but refuses its files, 401
GatedRepo without a token and 403 GatedRepo with a token whose account has not accepted the
licence. The token `hf_granted` has accepted it.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

GRANTED_TOKEN = "hf_granted"
LFS_SUFFIXES = (".safetensors", ".bin")


@dataclass
class Repo:
    files: dict[str, bytes]
    gated: bool = False
    revisions: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit

    @property
    def commit(self) -> str:
        """A stable 40-hex commit id from the content (as a git commit id looks)."""
        digest = hashlib.sha1()
        for name in sorted(self.files):
            digest.update(name.encode() + b"\0" + hashlib.sha1(self.files[name]).digest())
        return digest.hexdigest()

    def resolve(self, revision: str) -> str | None:
        if revision == self.commit:
            return revision
        return self.revisions.get(revision, self.commit if revision == "main" else None)


def git_oid(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


class FakeHub:
    """The server, in a thread: `with FakeHub() as hub: hub.add(...); hub.url`."""

    def __init__(self):
        self.repos: dict[str, Repo] = {}
        self.requests: list[dict] = []  # method, path, user agent, authorization of each request
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, repo_id: str, folder: Path | None = None, gated: bool = False, **revisions: str) -> Repo:
        files = (
            {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
            if folder
            else {"config.json": b"{}"}
        )
        self.repos[repo_id] = Repo(files, gated, dict(revisions))
        return self.repos[repo_id]

    def file_requests(self, method: str = "GET") -> list[str]:
        return [r["path"] for r in self.requests if r["method"] == method and "/resolve/" in r["path"]]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet: the tests read hub.requests
                pass

            def do_GET(self):
                self._answer(body=True)

            def do_HEAD(self):
                self._answer(body=False)

            def _send(self, status: int, headers: dict, content: bytes, body: bool):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if body:
                    self.wfile.write(content)

            def _error(self, status: int, code: str, message: str, body: bool):
                self._send(
                    status,
                    {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"},
                    json.dumps({"error": message}).encode(),
                    body,
                )

            def _json(self, value, body: bool, headers: dict | None = None):
                self._send(
                    200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(value).encode(), body
                )

            def _answer(self, body: bool):
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(
                    {
                        "method": self.command,
                        "path": path,
                        "user_agent": self.headers.get("User-Agent", ""),
                        "authorization": self.headers.get("Authorization"),
                    }
                )
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
                    repo_id, kind, revision = "/".join(parts[2:4]), parts[4], "/".join(parts[5:])
                elif len(parts) >= 5 and parts[2] == "resolve":
                    repo_id, kind, revision = "/".join(parts[:2]), "resolve", parts[3]
                    filename = "/".join(parts[4:])
                else:
                    return self._error(404, "EntryNotFound", "no such endpoint", body)
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._error(404, "RepoNotFound", "Repository not found", body)
                commit = repo.resolve(revision)
                if commit is None:
                    return self._error(404, "RevisionNotFound", "Invalid rev id: " + revision, body)
                if kind == "revision":
                    return self._json(
                        {
                            "id": repo_id,
                            "modelId": repo_id,
                            "sha": commit,
                            "private": False,
                            "gated": "manual" if repo.gated else False,
                            "siblings": [{"rfilename": name} for name in sorted(repo.files)],
                        },
                        body,
                    )
                if kind == "tree":
                    return self._json(
                        [self._tree_entry(name, content) for name, content in sorted(repo.files.items())], body
                    )
                # A gated repository shows its metadata to anyone, its files only to accounts that
                # accepted the licence.
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ").strip()
                if repo.gated and token != GRANTED_TOKEN:
                    status = 403 if token else 401
                    return self._error(
                        status,
                        "GatedRepo",
                        f"Access to model {repo_id} is restricted and you are "
                        f"not in the authorized list. Visit {hub.url}/{repo_id} "
                        f"to ask for access.",
                        body,
                    )
                if filename not in repo.files:
                    return self._error(404, "EntryNotFound", f"{filename} does not exist", body)
                content = repo.files[filename]
                headers = {"X-Repo-Commit": commit, "Content-Type": "application/octet-stream"}
                if filename.endswith(LFS_SUFFIXES):
                    headers.update(
                        {
                            "X-Linked-Etag": f'"{hashlib.sha256(content).hexdigest()}"',
                            "X-Linked-Size": str(len(content)),
                            "ETag": f'"{git_oid(content)}"',
                        }
                    )
                else:
                    headers["ETag"] = f'"{git_oid(content)}"'
                self._send(200, headers, content, body)

            @staticmethod
            def _tree_entry(name: str, content: bytes) -> dict:
                entry = {"type": "file", "path": name, "size": len(content), "oid": git_oid(content)}
                if name.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {
                        "oid": hashlib.sha256(content).hexdigest(),
                        "size": len(content),
                        "pointerSize": 134,
                    }
                return entry

        return Handler
