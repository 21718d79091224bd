"""Requests and the two places their responses are kept.

A request is the whole of what a backend is asked (messages, sampling params, the per-prompt seed) plus
the identity of the backend (model content hash and device for local models, model name and API for an
endpoint; never a URL or a key). Its content hash is its cache key.

- The request cache (`RequestCache`) is content-addressed, outside any step's key, and survives across
  runs and recipes: a rerun, or a changed seed topic, never pays twice for a request already answered.
  An entry's mtime is its last use (a hit refreshes it): `anneal cache gc` deletes the entries of the
  store's cache unused for `--request-days` (cache/gc.ts).
- The resume log (`ResumeLog`) is the step's checkpoint in its resume directory: one JSON line per
  finished request, fsynced, so a kill -9 loses at most the requests in flight. A torn last line is
  ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Request:
    messages: tuple[tuple[str, str], ...]  # (role, content)
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int

    def payload(self) -> dict[str, Any]:
        return {
            "messages": [{"role": r, "content": c} for r, c in self.messages],
            "max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "top_p": self.top_p,
            "seed": self.seed,
        }

    def key(self, backend_id: dict[str, Any]) -> str:
        blob = json.dumps({"v": 1, "backend": backend_id, "request": self.payload()}, sort_keys=True,
                          ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class Response:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "finish_reason": self.finish_reason}

    @staticmethod
    def from_json(d: dict[str, Any]) -> "Response":
        return Response(str(d["text"]), int(d["prompt_tokens"]), int(d["completion_tokens"]), str(d["finish_reason"]))


class RequestCache:
    """`DIR/ab/abcdef....json`, each written to a temp file and renamed into place (never half-written)."""

    def __init__(self, root: str | None) -> None:
        self.root = root
        if root:
            os.makedirs(root, exist_ok=True)

    def _path(self, key: str) -> str:
        assert self.root
        return os.path.join(self.root, key[:2], key + ".json")

    def get(self, key: str) -> Response | None:
        entry = self._read(key)
        try:
            return None if entry is None else Response.from_json(entry)
        except (ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, response: Response) -> None:
        self._write(key, response.to_json())

    def file_sha256(self, path: str) -> str:
        """A file's sha256, remembered here by its stat signature (device, inode, size, mtime, ctime): a
        store artifact is read-only, and any write, copy or replace moves its ctime, which user space cannot
        set back, so a multi-GB GGUF is hashed once per machine instead of on every run. Kept like a
        request entry (a hit refreshes it; `cache gc` collects it when unused)."""
        st = os.stat(path)
        signature = f"file-sha256\0{os.path.realpath(path)}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
        key = hashlib.sha256(signature.encode("utf-8")).hexdigest()
        entry = self._read(key)
        digest = entry.get("sha256") if isinstance(entry, dict) else None
        if isinstance(digest, str) and len(digest) == 64:
            return digest
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        self._write(key, {"sha256": digest, "path": os.path.realpath(path)})
        return digest

    def _read(self, key: str) -> Any:
        if not self.root:
            return None
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None
        try:
            os.utime(path)  # last use: `anneal cache gc` keeps entries used within --request-days
        except OSError:
            pass  # a read-only shared cache: the entry is still good
        return entry

    def _write(self, key: str, entry: Any) -> None:
        if not self.root:
            return
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(entry, f, ensure_ascii=False)
        os.replace(tmp, path)


class ResumeLog:
    """The requests this step key has finished, appended to RESUME_DIR/generate-done.jsonl."""

    def __init__(self, resume_dir: str) -> None:
        os.makedirs(resume_dir, exist_ok=True)
        self.path = os.path.join(resume_dir, "generate-done.jsonl")
        self.done: dict[str, Response] = {}
        if os.path.exists(self.path):
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        line = json.loads(raw)
                        self.done[line["key"]] = Response.from_json(line["response"])
                    except (ValueError, KeyError, TypeError):
                        continue  # the line a kill cut short
        self._file = open(self.path, "ab")
        if self._file.tell() > 0:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    self._file.write(b"\n")  # end the torn line, so the next one parses

    def add(self, key: str, response: Response) -> None:
        self.done[key] = response
        line = json.dumps({"key": key, "response": response.to_json()}, ensure_ascii=False) + "\n"
        self._file.write(line.encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
