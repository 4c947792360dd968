"""`python -m fhir_server.serve.child SPEC_JSON`: run one ChildSpec's target (the supervisor
starts each service this way, with the parent-death signal already set before exec)."""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    module, _, function = spec["target"].partition(":")
    try:
        getattr(importlib.import_module(module), function)(**spec["kwargs"])
    except OSError as exc:  # e.g. the port is in use: a message, not a traceback
        print(f"telefhir serve: {spec['name']} on {spec['host']}:{spec['port']}: {exc}",
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
