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
        if not self.root:
            return None
        path = self._path(key)
        try:
            with open(path, encoding="utf-8") as f:
                response = Response.from_json(json.load(f))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        try:
            os.utime(path)  # last use: `anneal cache gc` keeps entries used within --request-days
        except OSError:
            pass  # a read-only shared cache: the entry is still good
        return response

    def put(self, key: str, response: Response) -> None:
        if not self.root:
            return
        path = self._path(key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(response.to_json(), f, ensure_ascii=False)
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
