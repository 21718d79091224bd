"""The step side of a fork from the warm process (warm_server.py): run a worker script the way
`python SCRIPT ARGS...` would, in a process that already imported the heavy modules, and return the
exit code that interpreter would have exited with."""
from __future__ import annotations

import os
import signal
import sys


def run_as_main(argv: list[str], env: dict[str, str], cwd: str) -> int:
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    script = os.path.abspath(argv[0])
    sys.argv = list(argv)
    sys.path[0] = os.path.dirname(os.path.realpath(script))
    sys.stdout, sys.stderr, sys.stdin = sys.__stdout__, sys.__stderr__, sys.__stdin__
    fresh_random_state()
    code = 0
    try:
        import runpy

        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = exit_code(e.code)
    except KeyboardInterrupt:
        print_exception(script)
        finish()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)  # as CPython does: the parent sees "killed by SIGINT"
    except BaseException:
        print_exception(script)
        code = 1
    finish()
    return code


def fresh_random_state() -> None:
    """What a new interpreter starts with: torch's and numpy's global generators seeded from the OS, not
    the server's state that every fork would otherwise share (`random` reseeds itself after a fork).
    torch.seed() only queues the CUDA seed; it does not initialise CUDA."""
    if "torch" in sys.modules:
        sys.modules["torch"].seed()
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()


def exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def print_exception(script: str) -> None:
    """The traceback Python would print: frames from the script on, not the ones of this runner."""
    etype, value, tb = sys.exc_info()
    first = tb
    while first is not None and first.tb_frame.f_code.co_filename != script:
        first = first.tb_next
    if value is not None and first is not None:
        value = value.with_traceback(first)
    sys.excepthook(etype, value, first or tb)


def finish() -> None:
    """Interpreter shutdown as far as it is observable: non-daemon threads joined, atexit run, streams flushed."""
    import atexit
    import threading

    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except Exception:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
