"""JSON Merge Patch as a pure function, against the examples of RFC 7396 appendix A
(https://www.rfc-editor.org/rfc/rfc7396#appendix-A), and the bodies it refuses."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.patching.merge_patch import merge_patch, parse_merge_patch


@pytest.mark.parametrize(("target", "patch", "result"), [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
])
def test_rfc_7396_examples(target: Any, patch: Any, result: Any) -> None:
    assert merge_patch(target, patch) == result


def test_target_is_not_changed() -> None:
    """The patched value is new; the stored resource it came from is left as it was."""
    target = {"name": [{"family": "A"}], "meta": {"versionId": "1"}}
    out = merge_patch(target, {"meta": {"versionId": None}, "active": True})
    assert target == {"name": [{"family": "A"}], "meta": {"versionId": "1"}}
    assert out == {"name": [{"family": "A"}], "meta": {}, "active": True}


@pytest.mark.parametrize("body", [b"", b"  ", b"{oops", b"[]", b'[{"op": "add"}]', b'"x"',
                                  b"null", b"3", b"\xff"])
def test_bodies_that_are_not_a_merge_patch_of_a_resource(body: bytes) -> None:
    """A resource is an object, so a merge patch of one is an object too: 400 otherwise."""
    with pytest.raises(FhirError) as info:
        parse_merge_patch(body)
    assert info.value.status == 400
