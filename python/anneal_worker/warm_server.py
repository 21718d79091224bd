"""The warm worker process: imports torch, transformers, trl, peft (and lm_eval) once per run, then
forks one child per Python step, so a step starts in milliseconds instead of spending ~12 s on imports.

Started by the engine (engine/warm-workers.ts) as `python -m anneal_worker.warm_server SOCKET`. Each
step's command runs `warm_client.py SOCKET PYTHON SCRIPT ARGS...` under the usual supervisor instead of
`PYTHON SCRIPT ARGS...`; the client sends its stdout and stderr descriptors, environment, working
directory and argv over the Unix socket, the server forks a child that takes them over and runs SCRIPT
as `__main__`, and the client exits the way the child exited (code or signal). See warm_client.py for
how signals reach the child and how a killed client takes the child's process group with it.

Why fork is safe here:
- The server is single-threaded: one select loop, no threads, so no lock can be held by a thread that
  does not exist in the child. Modules are imported one at a time between polls, never during a fork.
- It never runs a torch operation and never touches torch.cuda (CUDA is initialised only in children,
  after CUDA_VISIBLE_DEVICES is set). Imports that ask whether CUDA is available use the NVML-based
  check, which does not initialise the driver. If CUDA is initialised anyway, the server declines
  every request and the steps start cold.
- It declines a request whose environment differs from its own in anything but the per-step variables
  (CUDA_VISIBLE_DEVICES, ANNEAL_STEP, ANNEAL_SPEC, and the ANNEAL_LLAMA_* paths of llama.cpp's tools that
  the eval, quantize and generate workers read when they run, never at import): libraries read their
  environment when imported, so the child would otherwise not be what a cold start gives. A declined client simply execs the cold
  command.
- Each child gets what a fresh interpreter would have: default signal handlers, stdin on /dev/null,
  the step's environment and working directory, torch and numpy generators seeded from the OS
  (Python's `random` reseeds itself after fork), none of the server's descriptors. The hash seed of
  str is the same in every worker, warm or cold: the engine sets PYTHONHASHSEED=0 (engine/python.ts).
What a child still shares with the server: warnings that libraries print once at import time, which go
to the server's log rather than the step's.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import sys
import time

PER_STEP_ENV = ("CUDA_VISIBLE_DEVICES", "ANNEAL_STEP", "ANNEAL_SPEC")
# anneal's own variables that a worker reads only while it runs (llama.cpp's tool paths and commit)
PER_STEP_ENV_PREFIXES = ("ANNEAL_LLAMA_",)


def per_step(name: str) -> bool:
    return name in PER_STEP_ENV or name.startswith(PER_STEP_ENV_PREFIXES)
PARENT_DEATH_SIGNAL = signal.SIGUSR1

# What the workers import (steps/train/*/worker.py): (module, attributes to touch); touching transformers'
# lazy attributes is what really imports its submodules. Steps that start before all of it is imported
# start cold.
PRELOAD: list[tuple[str, tuple[str, ...]]] = [
    ("anneal_worker.training", ()), ("anneal_worker.datasets", ()), ("anneal_worker.templates", ()),
    ("numpy", ()), ("torch", ()), ("tokenizers", ()), ("safetensors.torch", ()),
    ("transformers", ("PreTrainedTokenizerFast", "AutoTokenizer", "AutoConfig", "AutoModelForCausalLM",
                      "LlamaConfig", "PhiConfig", "set_seed", "TrainerCallback", "default_data_collator")),
    ("transformers.models.llama.modeling_llama", ()), ("transformers.models.phi.modeling_phi", ()),
    ("transformers", ("Trainer", "TrainingArguments")),
    ("datasets", ("Dataset",)),
    ("peft", ("LoraConfig", "get_peft_model", "PeftModel")),
    ("trl", ("SFTConfig", "SFTTrainer", "DPOConfig", "DPOTrainer")),
    ("lm_eval", ("simple_evaluate",)), ("lm_eval.tasks", ("TaskManager",)), ("lm_eval.models.huggingface", ()),
]


def log(message: str) -> None:
    print(f"[warm {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Server:
    def __init__(self, socket_path: str) -> None:
        self.env = dict(os.environ)
        self.parent_gone = False
        self.python = os.path.abspath(sys.executable)
        self.children: dict[int, socket.socket] = {}
        self.accepting = True
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bound under another name until the imports are done: until then a client finds no socket and
        # starts cold at once, instead of waiting for an import that may take half a minute
        self.socket_path = socket_path + ".loading"
        self.listener.bind(self.socket_path)
        self.listener.listen(64)
        self.final_path = socket_path
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_w, False)
        signal.set_wakeup_fd(self.wakeup_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, self.on_sigterm)
        signal.signal(PARENT_DEATH_SIGNAL, self.on_parent_death)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "signal")
        # stdin is a pipe anneal never writes to: end-of-file means anneal is gone
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")

    # --- the loop ---

    def preload(self, modules: list[tuple[str, tuple[str, ...]]]) -> None:
        # imports may ask whether CUDA is available; this check does not initialise the driver
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
        for module, attrs in modules:
            self.poll(0)
            if not self.accepting:
                return
            t0 = time.monotonic()
            try:
                mod = __import__(module, fromlist=["_"])
                for attr in attrs:
                    getattr(mod, attr)
            except Exception as e:  # a missing optional package: the child imports (and fails) itself
                log(f"preload {module}: {type(e).__name__}: {e}")
                continue
            log(f"preloaded {module} in {time.monotonic() - t0:.1f}s")
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
        os.rename(self.socket_path, self.final_path)
        self.socket_path = self.final_path
        print("ready", flush=True)
        log("ready")

    def serve(self) -> None:
        while self.accepting or self.children:
            self.poll(None)
        log("exiting")
        self.exit()

    def exit(self) -> None:
        """The engine removes the folder of the socket and this log when it closes us; if it is gone
        (killed), nobody will, so do it here."""
        if self.parent_gone:
            import shutil

            shutil.rmtree(os.path.dirname(self.final_path), ignore_errors=True)
        os._exit(0)

    def poll(self, timeout: float | None) -> None:
        for key, _ in self.selector.select(timeout):
            if key.data == "accept":
                self.accept()
            elif key.data == "signal":
                os.read(self.wakeup_r, 512)
                self.reap()
            elif key.data == "parent" and not os.read(sys.stdin.fileno(), 512):
                self.parent_gone = True
                self.stop("anneal exited")
        self.reap()

    def on_sigterm(self, *_) -> None:
        # the end of a run: exit now, even halfway through an import, unless steps still run from here
        if not self.children:
            self.exit()
        self.stop("SIGTERM")

    def on_parent_death(self, *_) -> None:
        self.parent_gone = True
        if not self.children:
            self.exit()
        self.stop("anneal exited")

    def stop(self, why: str) -> None:
        if not self.accepting:
            return
        log(f"stopping ({why}); {len(self.children)} step(s) still running")
        self.accepting = False
        for fd in (self.listener.fileno(), sys.stdin.fileno()):
            try:
                self.selector.unregister(fd)
            except (KeyError, ValueError):
                pass
        self.listener.close()
        try:
            os.unlink(self.socket_path)
        except OSError:
            pass

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is not None:
                send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                conn.close()

    # --- one request ---

    def accept(self) -> None:
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        try:
            request, fds = receive_request(conn)
        except (OSError, ValueError) as e:
            log(f"bad request: {e}")
            conn.close()
            return
        why = self.decline_reason(request, fds)
        if why is not None:
            log(f"declined {request.get('argv')}: {why}")
            send(conn, {"declined": why})
            for fd in fds:
                os.close(fd)
            conn.close()
            return
        pid = os.fork()
        if pid == 0:
            self.become_step(conn, request, fds)  # never returns
        try:
            os.setpgid(pid, pid)  # also done in the child: whichever runs first, the group exists now
        except OSError:
            pass
        for fd in fds:
            os.close(fd)
        self.children[pid] = conn
        send(conn, {"pid": pid})
        print(f"forked {pid}", flush=True)

    def decline_reason(self, request: dict, fds: list[int]) -> str | None:
        if not self.accepting:
            return "the warm process is stopping"
        if len(fds) != 2:
            return "expected stdout and stderr descriptors"
        argv = request.get("argv") or []
        if len(argv) < 2 or os.path.abspath(argv[0]) != self.python:
            return f"not this interpreter ({self.python})"
        if argv[1].startswith("-") or not argv[1].endswith(".py"):
            return "only `python SCRIPT.py ARGS...` starts warm"
        env = request.get("env") or {}
        differs = sorted(k for k in set(env) | set(self.env) if not per_step(k) and env.get(k) != self.env.get(k))
        if differs:
            return f"environment differs from the warm process's ({', '.join(differs[:5])})"
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            return "CUDA was initialised in the warm process"
        return None

    def become_step(self, conn: socket.socket, request: dict, fds: list[int]) -> None:
        """In the child: turn into what `python SCRIPT ARGS...` would be, run it, exit like it."""
        code = 1
        try:
            os.setpgid(0, 0)
            for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT, PARENT_DEATH_SIGNAL):
                signal.signal(sig, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.set_wakeup_fd(-1)
            self.selector.close()
            for fd in (self.wakeup_r, self.wakeup_w):
                os.close(fd)
            self.listener.close()
            for other in self.children.values():
                other.close()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.close(devnull)
            os.dup2(fds[0], 1)
            os.dup2(fds[1], 2)
            for fd in fds:
                os.close(fd)
            watch_client(conn)
            from anneal_worker.warm_child import run_as_main

            code = run_as_main(request["argv"][1:], request["env"], request["cwd"])
        except BaseException:  # the child must never return into the server's loop
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)


def watch_client(conn: socket.socket) -> None:
    """The client stands where `python SCRIPT` would stand in the supervisor's process group. If it
    dies (SIGKILL after the grace period, or anneal gone), the step's whole group goes with it, as the
    supervisor's group would."""
    import threading

    # accept() gave the connection a 10 s timeout for reading the request; a recv that timed out here
    # would read as a dead client and SIGKILL every step that runs longer than 10 s
    conn.settimeout(None)

    def watch() -> None:
        try:
            while conn.recv(64):
                pass
        except OSError:
            pass
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="anneal-warm-client-watch", daemon=True).start()


def receive_request(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 4)
    if len(data) < 4:
        raise ValueError("short request")
    (size,) = struct.unpack("!I", data[:4])
    data = data[4:]
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ValueError("truncated request")
        data += chunk
    return json.loads(data), list(fds)


def send(conn: socket.socket, message: dict) -> None:
    try:
        conn.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the client is gone; its child was killed with it


def die_with_parent() -> None:
    """A signal when anneal dies, even halfway through an import (stdin's end-of-file is only seen
    between imports): Linux's parent-death signal. Not SIGTERM, which means "the run is over": anneal is
    multi-threaded, so after its death getppid() may still name it and cannot tell the two apart.
    Forked steps do not inherit it; their clients watch for them."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(PARENT_DEATH_SIGNAL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception as e:  # not Linux: the stdin watch still ends it, between imports
        log(f"no parent-death signal: {e}")


def main() -> None:
    """`warm_server SOCKET [--preload MODULE,MODULE...]` (the default list is PRELOAD)."""
    die_with_parent()
    server = Server(sys.argv[1])
    log(f"listening on {sys.argv[1]} (pid {os.getpid()})")
    if len(sys.argv) > 3 and sys.argv[2] == "--preload":
        server.preload([(m, ()) for m in sys.argv[3].split(",") if m])
    else:
        server.preload(PRELOAD)
    server.serve()


if __name__ == "__main__":
    main()
