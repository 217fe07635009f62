"""An executor for the fault tests: appends one line per start and end of each attempt
to a ledger file, so a test can tell from the outside what ran, how often and where.

Run as the worker runs any executor (`python -m tests.python.ledger_executor
--result-id N --attempt A [--task-path P] --payload-stdin|--payload-file F|--payload-json J`).
Kept to the standard library's cheapest modules: the chaos test spawns thousands.
The task's kwargs drive it:
  ledger              path of the ledger file (required)
  seconds             how long the attempt works (default 0.05)
  seconds_by_attempt  {"1": 3, "2": 0.5}: overrides `seconds` per attempt number
Ledger line: "<start|end> <result_id> <attempt> <pid> <worker> <unix time> <worker pid>",
where <worker> is $LEDGER_WORKER (or "-") and <worker pid> the parent's pid. The attempt returns its attempt number.
"""

import json
import os
import sys
import time


def options(argv):
    found = {}
    i = 0
    while i < len(argv):
        name = argv[i]
        if name == "--payload-stdin":
            found[name] = True
            i += 1
        else:
            found[name] = argv[i + 1] if i + 1 < len(argv) else ""
            i += 2
    return found


def note(ledger, event, result_id, attempt):
    line = "%s %s %d %d %s %.6f %d\n" % (event, result_id, attempt, os.getpid(),
                                         os.environ.get("LEDGER_WORKER", "-"), time.time(), os.getppid())
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main():
    opts = options(sys.argv[1:])
    if "--payload-stdin" in opts:
        spec = json.loads(sys.stdin.read())
    elif "--payload-file" in opts:
        with open(opts["--payload-file"]) as handle:
            spec = json.load(handle)
    else:
        spec = json.loads(opts["--payload-json"])
    result_id = opts["--result-id"]
    attempt = int(opts.get("--attempt", "1"))
    kwargs = spec.get("kwargs") or {}
    ledger = kwargs["ledger"]
    seconds = float(kwargs.get("seconds", 0.05))
    seconds = float((kwargs.get("seconds_by_attempt") or {}).get(str(attempt), seconds))
    note(ledger, "start", result_id, attempt)
    time.sleep(seconds)
    note(ledger, "end", result_id, attempt)
    sys.stdout.write(json.dumps({"ok": True, "return": attempt}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
