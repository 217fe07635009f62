"""A stand-in for reproq_django.executor that speaks the executor protocol.

Run as `python -m fake_executor --result-id N --attempt A [--task-path P]
(--payload-stdin | --payload-file PATH | --payload-json JSON)`. What it does is
chosen by the task path's last component, so tests can script every behaviour a
real executor (or a misbehaving task) shows.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--result-id", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--task-path")
    parser.add_argument("--settings")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--payload-stdin", action="store_true")
    group.add_argument("--payload-file")
    group.add_argument("--payload-json")
    return parser.parse_args()


def load_spec(args):
    if args.payload_stdin:
        return json.loads(sys.stdin.read())
    if args.payload_file:
        with open(args.payload_file) as handle:
            return json.load(handle)
    return json.loads(args.payload_json)


def emit(envelope, code=0):
    sys.stdout.write(json.dumps(envelope) + "\n")
    sys.stdout.flush()
    sys.exit(code)


def fail(cls, message, code=1):
    emit({"ok": False, "exception_class": cls, "message": message, "traceback": "Traceback: " + message}, code)


def main():
    args = parse_args()
    spec = load_spec(args)
    path = args.task_path or spec["task_path"]
    name = path.rsplit(".", 1)[-1]
    kwargs = spec.get("kwargs") or {}
    if name == "ok":
        emit({"ok": True, "return": spec.get("args", [None])[0] if spec.get("args") else None})
    elif name == "django_settings":
        # Loads the stub Django with the given DATABASES, as a Django task would load settings.
        stub = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stub_django")
        if stub not in sys.path:
            sys.path.insert(0, stub)
        import django.conf

        django.conf.settings.DATABASES = kwargs.get("databases", {"default": {}})
        emit({"ok": True, "return": sorted(django.conf.settings.DATABASES)})
    elif name == "echo":
        emit({"ok": True, "return": {"argv": sys.argv[1:], "spec": spec, "cwd": os.getcwd(),
                                     "env": {k: os.environ.get(k) for k in kwargs.get("env", [])},
                                     "stdin_is_tty": False}})
    elif name == "no_return":
        emit({"ok": True})
    elif name == "fail":
        fail("ValueError", kwargs.get("message", "boom"))
    elif name == "flaky":
        if args.attempt < int(kwargs.get("succeed_on", 2)):
            fail("FlakyError", "attempt %d fails" % args.attempt)
        emit({"ok": True, "return": args.attempt})
    elif name == "sleep":
        time.sleep(float(kwargs.get("seconds", 1)))
        emit({"ok": True, "return": os.getpid() if kwargs.get("return_pid") else "slept"})
    elif name == "ignore_term":
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(float(kwargs.get("seconds", 60)))
        emit({"ok": True})
    elif name == "garbage":
        sys.stdout.write("this is not json\n")
    elif name == "empty":
        pass
    elif name == "huge":
        sys.stdout.write("x" * int(kwargs.get("bytes", 2 * 1024 * 1024)))
    elif name == "flood":
        # Prints `mib` MiB in 1 MiB writes, so the task itself stays small.
        chunk = "y" * (1024 * 1024)
        for _ in range(int(kwargs.get("mib", 200))):
            sys.stdout.write(chunk)
        sys.stdout.flush()
    elif name == "binary":
        sys.stdout.buffer.write(b"\xff\xfe\x00garbage\x80")
    elif name == "noisy":
        sys.stdout.write("some library printed this\n")
        sys.stderr.write("a warning on stderr\n")
        emit({"ok": True, "return": "after noise"})
    elif name == "ok_nonzero":
        emit({"ok": True, "return": 1}, code=3)
    elif name == "crash":
        sys.stderr.write("about to crash\n")
        sys.stderr.flush()
        os._exit(7)
    elif name == "grandchild":
        # A background grandchild inherits stdout/stderr and outlives us.
        subprocess.Popen(["sleep", "300"])
        emit({"ok": True, "return": "left a grandchild"})
    elif name == "nul_return":
        emit({"ok": True, "return": "a\u0000b"})
    elif name == "counter":
        from tests.python import state_module

        state_module.COUNTER += 1
        emit({"ok": True, "return": {"counter": state_module.COUNTER, "pid": os.getpid()}})
    elif name == "balloon":
        from tests.python import state_module

        state_module.BALLOON.append(bytearray(int(kwargs.get("mib", 64)) * 1024 * 1024))
        emit({"ok": True, "return": os.getpid()})
    elif name == "chdir":
        os.chdir("/")
        emit({"ok": True, "return": os.getcwd()})
    elif name == "where":
        import signal

        emit({"ok": True, "return": {"cwd": os.getcwd(), "argv0": sys.argv[0],
                                     "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL}})
    elif name == "trap_sigterm":
        import signal

        signal.signal(signal.SIGTERM, lambda *_: None)
        emit({"ok": True, "return": "trapped"})
    elif name == "print":
        print("a task printing to stdout")
        emit({"ok": True, "return": "printed"})
    elif name == "deep_return":
        levels = int(kwargs.get("levels", 100000))
        sys.stdout.write('{"ok": true, "return": ' + "[" * levels + "]" * levels + "}\n")
    elif name == "journal":
        # One line per execution in kwargs["file"] (counts re-runs), then a short sleep.
        with open(kwargs["file"], "a") as handle:
            handle.write("%s %.3f\n" % (args.result_id, time.time()))
        time.sleep(float(kwargs.get("seconds", 0)))
        emit({"ok": True, "return": args.result_id})
    elif name == "nan":
        sys.stdout.write('{"ok": true, "return": NaN}\n')
    else:
        fail("ImportError", "Failed to import task %s: no such fake task" % path)


if __name__ == "__main__":
    main()
