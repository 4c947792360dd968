"""The one lock around fhirpathpy evaluations: fhirpathpy keeps per-evaluation state in module
globals (``constants.reset()`` on every call), so concurrent evaluations in one process, by the
search indexer and by profile validation alike, must not overlap."""

from __future__ import annotations

import threading

FHIRPATH_LOCK = threading.Lock()
