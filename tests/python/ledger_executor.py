"""An executor for the fault tests: appends one line per start and end of each attempt
to a ledger file, so a test can tell from the outside what ran, how often and where.

Run as the worker runs any executor (`python -m tests.python.ledger_executor ...`).
The task's kwargs drive it:
  ledger              path of the ledger file (required)
  seconds             how long the attempt works (default 0.05)
  seconds_by_attempt  {"1": 3, "2": 0.5}: overrides `seconds` per attempt number
Ledger line: "<start|end> <result_id> <attempt> <pid> <worker> <unix time>", where
<worker> is $LEDGER_WORKER (or "-"). The attempt returns its attempt number.
"""

import os
import sys
import time

from tests.python.fake_executor import emit, load_spec, parse_args


def note(ledger, event, args):
    line = "%s %s %d %d %s %.6f\n" % (event, args.result_id, args.attempt, os.getpid(),
                                      os.environ.get("LEDGER_WORKER", "-"), time.time())
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def main():
    args = parse_args()
    spec = load_spec(args)
    kwargs = spec.get("kwargs") or {}
    ledger = kwargs["ledger"]
    seconds = float(kwargs.get("seconds", 0.05))
    seconds = float((kwargs.get("seconds_by_attempt") or {}).get(str(args.attempt), seconds))
    note(ledger, "start", args)
    time.sleep(seconds)
    note(ledger, "end", args)
    emit({"ok": True, "return": args.attempt})


if __name__ == "__main__":
    sys.exit(main())
