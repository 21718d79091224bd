"""A Python step started from the warm process: `python -S -E warm_client.py SOCKET PYTHON SCRIPT ARGS...`.

It stands where `PYTHON SCRIPT ARGS...` would stand under the engine's supervisor (same process group,
same stdout/stderr pipes), starts in a few milliseconds (standard library only, no site), and:
- sends its stdout and stderr descriptors, environment, working directory and argv to the warm
  process (warm_server.py), which forks a child that runs SCRIPT with them;
- forwards SIGTERM, SIGINT, SIGHUP and SIGQUIT to the child's process group (the engine's SIGTERM to
  the supervisor's group reaches this process); if this process is killed (the engine's SIGKILL after
  the grace period), the child sees its connection close and kills its own group;
- exits with the child's exit code, or dies of the child's signal, as the cold command would.
When the warm process is not there or declines (another interpreter, a different environment), it
execs the cold command instead: nothing has been started, so the step is exactly as without it.
"""
import json
import os
import signal
import socket
import struct
import sys

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)


def main() -> None:
    socket_path, argv = sys.argv[1], sys.argv[2:]
    child = {"pid": None, "pending": None}

    def forward(sig, _frame):
        if child["pid"] is None:
            child["pending"] = sig
            return
        try:
            os.killpg(child["pid"], sig)
        except OSError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, forward)

    conn = connect(socket_path, argv)
    replies = conn.makefile("rb") if conn is not None else None
    reply = read_line(replies) if replies is not None else None
    if reply is None or "pid" not in reply:
        if conn is not None:
            conn.close()
        if child["pending"] is not None:
            die_of(child["pending"])
        cold(argv)
    child["pid"] = reply["pid"]
    if child["pending"] is not None:
        forward(child["pending"], None)
    result = read_line(replies)
    if result is None or "exit" not in result:
        # the warm process died during the step: its child cannot be waited for; stop it and fail
        try:
            os.killpg(child["pid"], signal.SIGKILL)
        except OSError:
            pass
        sys.stderr.write("anneal: the warm Python process exited during this step\n")
        os._exit(1)
    code = result["exit"]
    if code < 0:
        die_of(-code)
    os._exit(code)


def connect(socket_path: str, argv: list[str]):
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(socket_path)
        body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
        payload = struct.pack("!I", len(body)) + body
        sent = socket.send_fds(conn, [payload], [1, 2])
        if sent < len(payload):
            conn.sendall(payload[sent:])
        return conn
    except OSError:
        return None


def read_line(replies):
    try:
        line = replies.readline()
    except OSError:
        return None
    return json.loads(line) if line.endswith(b"\n") else None


def die_of(sig: int) -> None:
    if sig not in (signal.SIGKILL, signal.SIGSTOP):  # these two cannot be handled, so need no reset
        signal.signal(sig, signal.SIG_DFL)
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)


def cold(argv: list[str]) -> None:
    for sig in FORWARDED:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as the supervisor would have started it
    os.execv(argv[0], argv)


if __name__ == "__main__":
    main()
