"""`python -m fhir_server.serve.child SPEC_JSON`: run one ChildSpec's target (the supervisor
starts each service this way, with the parent-death signal already set before exec)."""

from __future__ import annotations

import importlib
import json
import sys


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    module, _, function = spec["target"].partition(":")
    getattr(importlib.import_module(module), function)(**spec["kwargs"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
