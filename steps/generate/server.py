"""Backend llama-server: the step serves a GGUF (the output of `quantize` with format gguf) with llama.cpp's
OpenAI-compatible server, asks it through the openai backend, and stops it.

- The server listens on 127.0.0.1 only, on a port the kernel picked, with `--threads` = the CPU slots the
  scheduler granted and `--parallel` = concurrency (each slot gets the model's training context, capped
  by the worker).
- It is started only when a request is missing from the resume log and the request cache: a rerun whose
  answers are all cached never loads the model.
- It is stopped when the step ends, also on failure (finally). On SIGTERM/SIGKILL of the step the engine
  signals the whole process group, which holds the server; and the server is started with the parent
  death signal set, so it dies with the worker even if the worker alone is killed -9.
- Readiness: GET /health answers 503 while loading and 200 once serving; the server exiting first is a
  clear error carrying the end of its log.
- Identity (the request cache key): the GGUF file's sha256 and the llama.cpp commit, never the port or
  the alias, so the same GGUF answers from the cache wherever it came from. The sha256 is computed once
  per file and machine (RequestCache.file_sha256 remembers it by the file's stat signature).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import Any, Callable

from backends import GenerateError

WHO = "generate"


def find_gguf(who: str, model_dir: str | None) -> str:
    """The single .gguf file of a model directory (quantize writes model.gguf), or a clear error."""
    if not model_dir or not os.path.isdir(model_dir):
        raise GenerateError(f"{who}: backend llama-server needs input 'model' (a GGUF model directory from quantize "
                            f"with format gguf); got {model_dir or 'none'}")
    found = sorted(f for f in os.listdir(model_dir) if f.endswith(".gguf"))
    if len(found) != 1:
        what = "no .gguf file" if not found else f"{len(found)} .gguf files ({', '.join(found)})"
        raise GenerateError(f"{who}: backend llama-server needs input 'model' to hold one GGUF file (quantize with "
                            f"format gguf); {model_dir} has {what}")
    path = os.path.join(model_dir, found[0])
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise GenerateError(f"{who}: {path} is not a GGUF file (it does not start with the GGUF magic)")
    return path


def context_length(path: str) -> int:
    """The model's training context from the GGUF metadata (`<arch>.context_length`), or 0 if absent."""
    try:
        from gguf import GGUFReader  # the gguf package of anneal's Python environment

        reader = GGUFReader(path, "r")
        arch_field = reader.fields.get("general.architecture")
        if arch_field is None:
            return 0
        arch = bytes(arch_field.parts[arch_field.data[0]]).decode("utf-8")
        field = reader.fields.get(f"{arch}.context_length")
        return int(field.parts[field.data[0]][0]) if field is not None else 0
    except Exception:  # metadata we cannot read: let the server use its default
        return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the worker that started it dies (Linux prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
        except OSError:
            pass


class LlamaServer:
    """llama-server on a GGUF; `url` is the API root (…/v1). Use as a context manager or call stop()."""

    def __init__(self, binary: str, gguf: str, alias: str, threads: int, parallel: int, ctx_per_slot: int,
                 seed: int, ready_timeout: float, log: Callable[[str, str], None]) -> None:
        self.gguf, self.alias = gguf, alias
        self.port = _free_port()
        argv = [binary, "--model", gguf, "--host", "127.0.0.1", "--port", str(self.port), "--threads", str(threads),
                "--parallel", str(parallel), "--alias", alias, "--seed", str(seed), "--no-webui"]
        if ctx_per_slot > 0:
            argv += ["--ctx-size", str(ctx_per_slot * parallel)]
        log(f"starting llama-server on 127.0.0.1:{self.port}: {os.path.basename(gguf)} as model {alias}, "
            f"{threads} thread(s), {parallel} slot(s)", "info")
        self.tail: list[str] = []
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        # its log goes to the step's log (our stderr), and the last lines are kept for error messages
        self.reader = threading.Thread(target=self._pump, name="llama-server-log", daemon=True)
        self.reader.start()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            sys.stderr.write(f"[llama-server] {line}\n")
            self.tail = (self.tail + [line])[-15:]

    def _log_tail(self) -> str:
        return " | ".join(l.strip() for l in self.tail if l.strip())[-1500:]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = f"http://127.0.0.1:{self.port}/health"
        while True:
            if self.proc.poll() is not None:
                self.reader.join(timeout=2)
                raise GenerateError(f"{WHO}: llama-server exited (code {self.proc.returncode}) before it was ready on "
                                    f"{self.gguf}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    if r.status == 200:
                        return
            except Exception:
                pass  # not listening yet, or 503 while the model loads
            if time.monotonic() > deadline:
                raise GenerateError(f"{WHO}: llama-server did not become ready within {timeout:g} s on {self.gguf}: "
                                    f"{self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(timeout=2)


def server_identity(gguf_sha256: str, api: str) -> dict[str, Any]:
    return {"type": "llama-server", "gguf": gguf_sha256, "engine": f"llama.cpp@{os.environ.get('ANNEAL_LLAMA_CPP_COMMIT', '')}",
            "api": api}
