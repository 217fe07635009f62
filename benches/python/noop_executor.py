"""The benchmark's no-op executor: real interpreter work per task, no task body.

It does what every executor must (import what it needs, read the argv and the payload,
decode the JSON spec, encode an envelope) and nothing else, so a drain run measures
reproq's own overhead per task in each executor mode.
"""

import json
import sys


def main():
    argv = sys.argv[1:]
    if "--payload-file" in argv:
        with open(argv[argv.index("--payload-file") + 1]) as handle:
            spec = json.load(handle)
    elif "--payload-json" in argv:
        spec = json.loads(argv[argv.index("--payload-json") + 1])
    else:
        spec = json.loads(sys.stdin.read())
    sys.stdout.write(json.dumps({"ok": True, "return": {"task": spec["task_path"], "args": spec.get("args")}}) + "\n")


if __name__ == "__main__":
    main()
