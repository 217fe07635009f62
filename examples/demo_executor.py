"""A tiny executor module for `make demo`, speaking reproq's executor protocol.

reproq runs `python -m examples.demo_executor --result-id N --attempt A --task-path P
--payload-stdin` and reads one JSON envelope from stdout. reproq-django's real executor
(`reproq_django.executor`) does the same with Django set up and your task imported.
"""

import argparse
import json
import sys


def add(*numbers):
    return sum(numbers)


def greet(name):
    return "hello, %s" % name


def flaky(attempt):
    if attempt < 2:
        raise ConnectionError("the upstream API timed out (attempt %d)" % attempt)
    return "worked on attempt %d" % attempt


def explode():
    raise ValueError("this task always fails")


TASKS = {"demo.tasks.add": add, "demo.tasks.greet": greet, "demo.tasks.flaky": flaky, "demo.tasks.explode": explode}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--result-id", required=True)
    parser.add_argument("--attempt", type=int, default=1)
    parser.add_argument("--task-path")
    parser.add_argument("--payload-stdin", action="store_true")
    parser.add_argument("--payload-file")
    parser.add_argument("--payload-json")
    args = parser.parse_args()
    if args.payload_file:
        spec = json.load(open(args.payload_file))
    elif args.payload_json:
        spec = json.loads(args.payload_json)
    else:
        spec = json.loads(sys.stdin.read())
    path = args.task_path or spec["task_path"]
    func = TASKS.get(path)
    try:
        if func is None:
            raise ImportError("no task %s" % path)
        kwargs = dict(spec.get("kwargs") or {})
        if func is flaky:
            kwargs["attempt"] = args.attempt
        result = func(*spec.get("args", []), **kwargs)
        print(json.dumps({"ok": True, "return": result}))
    except Exception as exc:  # the envelope carries every failure back to the worker
        print(json.dumps({"ok": False, "exception_class": type(exc).__name__, "message": str(exc), "traceback": ""}))
        sys.exit(1)


if __name__ == "__main__":
    main()
