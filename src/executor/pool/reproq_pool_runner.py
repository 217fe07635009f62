"""reproq's warm executor runner: one long-lived Python process that runs many tasks.

The worker starts `python -m reproq_pool_runner` with this file's directory prepended
to PYTHONPATH (nothing to install). The control channel is the process's original
stdin/stdout, duplicated to private descriptors at start-up; fds 0/1/2 are then
re-pointed per task, so a task's output never mixes with the protocol.

Frames are a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
Worker -> runner: {"module", "argv", "stdin", "stdout", "stderr"} (file paths).
Runner -> worker: {"ready": true, "pid"} once, then {"exit": <int>} per task, with
"warnings": [{"code", "message"}] added when the runner has advice for the worker's log
(each code at most once per runner; the worker logs each code once).

For each task the configured executor module runs exactly as `python -m` would run it
(runpy, run_name "__main__", the same argv), with SystemExit caught. Its code object is
compiled once per runner and reused (runners are recycled, so an edited module is
picked up by the next runner). Between tasks the
runner restores argv, the standard streams, signal handlers and the working directory,
and closes stale Django database connections when Django is loaded.
"""

import json
import os
import runpy
import signal

try:  # the C module: no enum conversions on the hot path
    import _signal as raw_signal
except ImportError:  # pragma: no cover
    raw_signal = signal
import struct
import sys

CONTROL_IN = os.dup(0)
CONTROL_OUT = os.dup(1)
os.set_inheritable(CONTROL_IN, False)
os.set_inheritable(CONTROL_OUT, False)


def read_exact(count):
    chunks = []
    while count:
        chunk = os.read(CONTROL_IN, count)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def read_frame():
    (length,) = struct.unpack(">I", read_exact(4))
    return json.loads(read_exact(length))


def write_frame(message):
    body = json.dumps(message).encode()
    data = struct.pack(">I", len(body)) + body
    while data:
        written = os.write(CONTROL_OUT, data)
        data = data[written:]


def catchable_signals():
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            yield int(sig), raw_signal.getsignal(sig)
        except (OSError, ValueError):
            pass


def redirect(fd, path, flags):
    target = os.open(path, flags, 0o600)
    os.dup2(target, fd)
    os.close(target)


CODE_CACHE = {}


def run_module_as_main(module):
    """Runs `module` as `python -m` would, compiling it once per runner."""
    details = CODE_CACHE.get(module)
    if details is None:
        get_details = getattr(runpy, "_get_module_details", None)
        run_code = getattr(runpy, "_run_module_code", None)
        if get_details is None or run_code is None:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            return
        details = get_details(module)
        CODE_CACHE[module] = details
    mod_name, spec, code = details
    runpy._run_module_code(code, None, "__main__", spec, spec.parent, spec.origin)


def run_task(request, baseline):
    sys.stdout.flush()
    sys.stderr.flush()
    redirect(0, request["stdin"], os.O_RDONLY)
    redirect(1, request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    redirect(2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sys.stdin = open(0, "r", closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)
    sys.argv = [request["module"]] + request["argv"]
    code = 0
    try:
        run_module_as_main(request["module"])
    except SystemExit as exit_:
        if exit_.code is None:
            code = 0
        elif isinstance(exit_.code, int):
            code = exit_.code
        else:
            sys.stderr.write(str(exit_.code) + "\n")
            code = 1
    except BaseException:  # the task crashed: report like `python -m` would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        restore(baseline)
    return code


def restore(baseline):
    argv, cwd, handlers, streams = baseline
    sys.argv = list(argv)
    sys.stdin, sys.stdout, sys.stderr = streams
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    os.dup2(SAVED_STDERR, 2)
    for sig, handler in handlers:
        try:
            if raw_signal.getsignal(sig) is not handler:
                raw_signal.signal(sig, handler)
        except (OSError, ValueError, TypeError):
            pass
    try:
        os.chdir(cwd)
    except OSError:
        pass
    if "django.db" in sys.modules:
        try:
            sys.modules["django.db"].close_old_connections()
        except Exception:
            pass


SAVED_STDERR = os.dup(2)

DJANGO_CHECKED = False


def django_warnings():
    """Advice about the Django settings the tasks loaded, checked once per runner.

    Django's default CONN_MAX_AGE = 0 closes the database connection at the end of every
    task (close_old_connections), so each task in a warm runner opens a new one.
    """
    global DJANGO_CHECKED
    if DJANGO_CHECKED or "django.conf" not in sys.modules:
        return []
    try:
        settings = sys.modules["django.conf"].settings
        if not settings.configured:
            return []
        databases = dict(settings.DATABASES)
    except Exception:
        return []
    DJANGO_CHECKED = True
    aliases = sorted(
        alias for alias, options in databases.items()
        if isinstance(options, dict) and options.get("CONN_MAX_AGE", 0) == 0
    )
    if not aliases:
        return []
    return [{
        "code": "django_conn_max_age_zero",
        "message": (
            "Django DATABASES %s %s CONN_MAX_AGE = 0 (Django's default): every task opens a new "
            "database connection (about 6 ms of Postgres CPU each). Set CONN_MAX_AGE = 600 and "
            "CONN_HEALTH_CHECKS = True in those DATABASES entries so a warm runner reuses its connection"
            % (", ".join(repr(a) for a in aliases), "has" if len(aliases) == 1 else "have")
        ),
        "aliases": aliases,
    }]


def main():
    if sys.path and sys.path[0] != os.getcwd():
        # `python -m` puts the working directory first; Django projects import from it.
        sys.path.insert(0, os.getcwd())
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    baseline = (list(sys.argv), os.getcwd(), list(catchable_signals()), (sys.stdin, sys.stdout, sys.stderr))
    write_frame({"ready": True, "pid": os.getpid()})
    while True:
        try:
            request = read_frame()
        except EOFError:
            return
        reply = {"exit": run_task(request, baseline)}
        warnings = django_warnings()
        if warnings:
            reply["warnings"] = warnings
        write_frame(reply)


if __name__ == "__main__":
    main()
