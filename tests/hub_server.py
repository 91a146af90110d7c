"""A minimal local stand-in for the Hugging Face Hub's file routes, for tests.

It serves what ``huggingface_hub.hf_hub_download`` (checked against huggingface_hub 2.4's
``file_download.py``) needs, on 127.0.0.1 with an OS-chosen port:

* ``HEAD``/``GET /{repo_id}/resolve/{revision}/{filename}``:
  - regular files: ``200`` with ``X-Repo-Commit``, ``ETag`` (git blob SHA-1) and ``Content-Length``;
  - LFS files (``*.safetensors``): ``302`` to a second server on another port (the "CDN", a
    different origin so the client does not follow the HEAD redirect, like the real Hub's CDN)
    with ``X-Repo-Commit``, ``X-Linked-Etag`` (the SHA-256) and ``X-Linked-Size``;
  - errors carry ``X-Error-Code`` ``RepoNotFound`` / ``RevisionNotFound`` / ``EntryNotFound``,
    which huggingface_hub maps to its typed exceptions.
* ``GET /api/models/{repo_id}/revision/{revision}``: a small model-info JSON.
* CDN: ``HEAD``/``GET /lfs/{sha256}`` -> the bytes (which a test may tamper with).

Every request is logged in ``FakeHub.requests`` so a test can prove that no request was made.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import unquote, urlsplit

__all__ = ["FakeHub"]


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class _Repo:
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag -> commit sha
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> files


class FakeHub:
    """Local Hub with model repos; use as a context manager or call start()/stop()."""

    def __init__(self) -> None:
        self.repos: dict[str, _Repo] = {}
        self.cdn_blobs: dict[str, bytes] = {}  # sha256 -> bytes served by the CDN
        self.requests: list[tuple[str, str]] = []
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.cdn_url = ""

    # ---- content -------------------------------------------------------------------------
    def add_commit(self, repo_id: str, files: dict[str, bytes], *, branch: str = "main",
                   tags: tuple[str, ...] = ()) -> str:
        """Add a commit holding ``files``; move ``branch`` (and ``tags``) to it; return its SHA."""
        repo = self.repos.setdefault(repo_id, _Repo())
        digest = hashlib.sha1(repo_id.encode() + b"\0" + str(len(repo.commits)).encode())
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + files[name])
        sha = digest.hexdigest()
        repo.commits[sha] = dict(files)
        for ref in (branch, *tags):
            repo.refs[ref] = sha
        for name, content in files.items():
            if self.is_lfs(name):
                self.cdn_blobs[hashlib.sha256(content).hexdigest()] = content
        return sha

    @staticmethod
    def is_lfs(filename: str) -> bool:
        return filename.endswith(".safetensors")

    def tamper_cdn(self, content: bytes, new_bytes: bytes) -> None:
        """Make the CDN serve ``new_bytes`` where the Hub announces ``content``'s SHA-256."""
        self.cdn_blobs[hashlib.sha256(content).hexdigest()] = new_bytes

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeHub:
        hub_server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cdn=False))
        cdn_server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(cdn=True))
        for server in (hub_server, cdn_server):
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                      daemon=True)
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.url = f"http://127.0.0.1:{hub_server.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{cdn_server.server_address[1]}"
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- HTTP ----------------------------------------------------------------------------
    def _handler(self, *, cdn: bool) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_HEAD(self) -> None:
                self._dispatch(send_body=False)

            def do_GET(self) -> None:
                self._dispatch(send_body=True)

            def _reply(self, status: int, headers: dict[str, str], body: bytes, send_body: bool) -> None:
                self.send_response(status)
                headers = {"Content-Length": str(len(body)), **headers}
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                if send_body and body:
                    self.wfile.write(body)

            def _error(self, status: int, code: str | None, send_body: bool,
                       extra: dict[str, str] | None = None) -> None:
                headers = dict(extra or {})
                if code is not None:
                    headers["X-Error-Code"] = code
                    headers["X-Error-Message"] = code
                body = json.dumps({"error": code or "Not Found"}).encode()
                self._reply(status, {"Content-Type": "application/json", **headers}, body, send_body)

            def _dispatch(self, send_body: bool) -> None:
                path = urlsplit(self.path).path
                hub.requests.append((self.command, ("cdn:" if cdn else "") + path))
                if cdn:
                    self._cdn(path, send_body)
                elif path.startswith("/api/models/") and "/revision/" in path:
                    self._model_info(path, send_body)
                elif "/resolve/" in path:
                    self._resolve(path, send_body)
                else:
                    self._error(404, None, send_body)

            def _find(
                self, repo_id: str, revision: str, send_body: bool
            ) -> tuple[str, dict[str, bytes]] | None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    self._error(404, "RepoNotFound", send_body)
                    return None
                sha = revision if revision in repo.commits else repo.refs.get(revision)
                if sha is None:
                    self._error(404, "RevisionNotFound", send_body)
                    return None
                return sha, repo.commits[sha]

            def _resolve(self, path: str, send_body: bool) -> None:
                head, _, rest = path.lstrip("/").partition("/resolve/")
                repo_id = unquote(head)
                revision_q, _, filename_q = rest.partition("/")
                found = self._find(repo_id, unquote(revision_q), send_body)
                if found is None:
                    return
                sha, files = found
                filename = unquote(filename_q)
                if filename not in files:
                    self._error(404, "EntryNotFound", send_body, {"X-Repo-Commit": sha})
                    return
                content = files[filename]
                if hub.is_lfs(filename):
                    sha256 = hashlib.sha256(content).hexdigest()
                    self._reply(302, {
                        "Location": f"{hub.cdn_url}/lfs/{sha256}",
                        "X-Repo-Commit": sha,
                        "ETag": f'"{git_blob_sha1(content)}"',
                        "X-Linked-Etag": f'"{sha256}"',
                        "X-Linked-Size": str(len(content)),
                    }, b"", send_body)
                else:
                    self._reply(200, {
                        "X-Repo-Commit": sha,
                        "ETag": f'"{git_blob_sha1(content)}"',
                        "Content-Type": "application/octet-stream",
                    }, content, send_body)

            def _model_info(self, path: str, send_body: bool) -> None:
                head, _, revision_q = path[len("/api/models/"):].partition("/revision/")
                repo_id = unquote(head)
                found = self._find(repo_id, unquote(revision_q), send_body)
                if found is None:
                    return
                sha, files = found
                body = json.dumps({"id": repo_id, "sha": sha,
                                   "siblings": [{"rfilename": n} for n in sorted(files)]}).encode()
                self._reply(200, {"Content-Type": "application/json"}, body, send_body)

            def _cdn(self, path: str, send_body: bool) -> None:
                key = path.rsplit("/", 1)[-1]
                if not path.startswith("/lfs/") or key not in hub.cdn_blobs:
                    self._error(404, None, send_body)
                    return
                self._reply(200, {"Content-Type": "application/octet-stream"}, hub.cdn_blobs[key], send_body)

        return Handler
