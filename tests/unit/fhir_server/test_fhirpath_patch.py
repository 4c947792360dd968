"""FHIRPath Patch as a pure function: the R4 operations (https://hl7.org/fhir/R4/fhirpatch.html)
on resources, the path subset, the value types and every way a patch can be wrong."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fhir_server.errors import FhirError
from fhir_server.patching.fhirpath_patch import apply_fhirpath_patch, parse_fhirpath_patch

Json = dict[str, Any]


def op(kind: str, path: str, **parts: Any) -> Json:
    """One `operation` parameter; value=... takes the value part's content (valueX, part...)."""
    out: list[Json] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, v in parts.items():
        if name in ("index", "source", "destination"):
            out.append({"name": name, "valueInteger": v})
        elif name == "name":
            out.append({"name": "name", "valueString": v})
        else:
            out.append({"name": "value", **v})
    return {"name": "operation", "part": out}


def patch(resource: Json, *ops: Json) -> Json:
    params: Json = {"resourceType": "Parameters"}
    if ops:
        params["parameter"] = list(ops)
    return apply_fhirpath_patch(copy.deepcopy(resource), parse_fhirpath_patch(params))


def refused(resource: Json, *ops: Json, params: Json | None = None) -> FhirError:
    body = params or {"resourceType": "Parameters", "parameter": list(ops)}
    with pytest.raises(FhirError) as info:
        apply_fhirpath_patch(copy.deepcopy(resource), parse_fhirpath_patch(body))
    return info.value


def pt(**extra: Any) -> Json:
    return {"resourceType": "Patient", "id": "p", **extra}


IDS = [{"system": "http://example.org", "value": f"value {i}"} for i in (1, 2, 3, 4)]


# -- the operations on primitives, complex and anonymous elements --------------------------------


def test_primitives() -> None:
    """replace, delete and add of a primitive, at the top and nested (R4 fhirpatch table)."""
    start = pt(birthDate="1920-01-01")
    assert patch(start, op("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"})) \
        == pt(birthDate="1930-01-01")
    assert patch(start, op("delete", "Patient.birthDate")) == pt()
    assert patch(pt(), op("add", "Patient", name="birthDate", value={"valueDate": "1930-01-01"})) \
        == pt(birthDate="1930-01-01")
    contact = pt(contact=[{"name": {"text": "a name"}, "gender": "male"}])
    assert patch(contact, op("replace", "Patient.contact[0].gender",
                             value={"valueCode": "female"})) \
        == pt(contact=[{"name": {"text": "a name"}, "gender": "female"}])
    assert patch(contact, op("replace", "Patient.contact[0].name.text",
                             value={"valueString": "the name"}))["contact"][0]["name"] \
        == {"text": "the name"}
    assert patch(contact, op("delete", "Patient.contact[0].gender")) \
        == pt(contact=[{"name": {"text": "a name"}}])
    # an object left empty goes too: FHIR JSON has no empty objects
    assert patch(contact, op("delete", "Patient.contact[0].name.text")) \
        == pt(contact=[{"gender": "male"}])
    assert patch(pt(contact=[{"name": {"text": "a name"}}]),
                 op("add", "Patient.contact[0]", name="gender", value={"valueCode": "male"})) \
        == pt(contact=[{"name": {"text": "a name"}, "gender": "male"}])


def test_complex_and_anonymous() -> None:
    """A datatype is given as its value[x]; anonymous (backbone) content as parts."""
    married = {"text": "married"}
    assert patch(pt(), op("add", "Patient", name="maritalStatus",
                          value={"valueCodeableConcept": married})) == pt(maritalStatus=married)
    assert patch(pt(maritalStatus={"id": "1", "text": "married"}),
                 op("replace", "Patient.maritalStatus",
                    value={"valueCodeableConcept": {"id": "2", "text": "not married"}})) \
        == pt(maritalStatus={"id": "2", "text": "not married"})
    assert patch(pt(maritalStatus=married), op("delete", "Patient.maritalStatus")) == pt()
    contact = {"part": [{"name": "name", "valueHumanName": {"text": "a name"}},
                        {"name": "telecom", "valueContactPoint": {"value": "1"}},
                        {"name": "telecom", "valueContactPoint": {"value": "2"}},
                        {"name": "gender", "valueCode": "other"}]}
    assert patch(pt(), op("add", "Patient", name="contact", value=contact)) == pt(contact=[
        {"name": {"text": "a name"}, "telecom": [{"value": "1"}, {"value": "2"}],
         "gender": "other"}])
    assert patch(pt(contact=[{"gender": "male"}]), op("delete", "Patient.contact[0]")) == pt()
    # nested anonymous content and a choice inside it (Observation.component.value[x])
    obs = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "bp"}}
    component = {"part": [
        {"name": "code", "valueCodeableConcept": {"text": "systolic"}},
        {"name": "value", "valueQuantity": {"value": 120, "unit": "mmHg"}}]}
    assert patch(obs, op("add", "Observation", name="component", value=component))["component"] \
        == [{"code": {"text": "systolic"}, "valueQuantity": {"value": 120, "unit": "mmHg"}}]


def test_lists() -> None:
    """insert (0-based, up to the length), delete at an index, add appends, move pops then
    inserts; several operations apply in order."""
    two = pt(identifier=IDS[:2])
    assert patch(two, op("insert", "Patient.identifier", index=2,
                         value={"valueIdentifier": IDS[2]})) == pt(identifier=IDS[:3])
    assert patch(two, op("insert", "Patient.identifier", index=1,
                         value={"valueIdentifier": IDS[2]})) \
        == pt(identifier=[IDS[0], IDS[2], IDS[1]])
    assert patch(two, op("insert", "Patient.identifier", index=0,
                         value={"valueIdentifier": IDS[2]})) \
        == pt(identifier=[IDS[2], IDS[0], IDS[1]])
    assert patch(pt(), op("insert", "Patient.identifier", index=0,
                          value={"valueIdentifier": IDS[0]})) == pt(identifier=IDS[:1])
    three = pt(identifier=IDS[:3])
    for i in range(3):
        assert patch(three, op("delete", f"Patient.identifier[{i}]")) \
            == pt(identifier=[x for j, x in enumerate(IDS[:3]) if j != i])
    four = pt(identifier=IDS)
    for source, dest, order in ((3, 1, [0, 3, 1, 2]), (3, 0, [3, 0, 1, 2]), (3, 2, [0, 1, 3, 2]),
                                (0, 3, [1, 2, 3, 0]), (1, 1, [0, 1, 2, 3])):
        assert patch(four, op("move", "Patient.identifier", source=source, destination=dest)) \
            == pt(identifier=[IDS[i] for i in order]), (source, dest)
    reverse = [op("move", "Patient.identifier", source=3, destination=d) for d in (0, 1, 2)]
    assert patch(four, *reverse) == pt(identifier=IDS[::-1])
    swapped = patch(pt(identifier=[{"id": "a", **IDS[0]}, {"id": "b", **IDS[1]}]),
                    op("replace", "Patient.identifier[0].value", value={"valueString": "value 2"}),
                    op("replace", "Patient.identifier[1].value", value={"valueString": "value 1"}))
    assert [(i["id"], i["value"]) for i in swapped["identifier"]] == [("a", "value 2"),
                                                                      ("b", "value 1")]
    assert patch(pt(), op("add", "Patient", name="identifier",
                          value={"valueIdentifier": IDS[2]})) == pt(identifier=[IDS[2]])
    assert patch(two, op("add", "Patient", name="identifier",
                         value={"valueIdentifier": IDS[2]})) == pt(identifier=IDS[:3])
    assert patch(two) == two  # an empty Parameters changes nothing


def test_primitive_extensions_travel_with_their_values() -> None:
    """`_given` stays aligned with `given` through insert, delete and move; a primitive's id
    and extensions are reachable as `.extension` and go with it when it is deleted
    (https://hl7.org/fhir/R4/json.html#primitive)."""
    ext = {"extension": [{"url": "http://example.org/x", "valueString": "v"}]}
    name = {"given": ["A", "B", "C"], "_given": [None, ext, None]}
    start = pt(name=[name])
    moved = patch(start, op("move", "Patient.name[0].given", source=1, destination=0))
    assert moved["name"][0] == {"given": ["B", "A", "C"], "_given": [ext, None, None]}
    inserted = patch(start, op("insert", "Patient.name[0].given", index=0,
                               value={"valueString": "Z"}))
    assert inserted["name"][0] == {"given": ["Z", "A", "B", "C"], "_given": [None, None, ext, None]}
    deleted = patch(start, op("delete", "Patient.name[0].given[1]"))
    assert deleted["name"][0] == {"given": ["A", "C"]}  # the _given of nulls is gone too
    with_ext = patch(start, op("insert", "Patient.name[0].given", index=3,
                               value={"valueString": "D", "_valueString": ext}))
    assert with_ext["name"][0]["_given"] == [None, ext, None, ext]
    born = pt(birthDate="1974-12-25", _birthDate=copy.deepcopy(ext))
    assert patch(born, op("delete", "Patient.birthDate")) == pt()
    assert patch(born, op("delete", "Patient.birthDate.extension('http://example.org/x')")) \
        == pt(birthDate="1974-12-25")
    added = patch(pt(birthDate="1974-12-25"), op("add", "Patient.birthDate", name="extension",
                                                 value={"part": [
                                                     {"name": "url", "valueUri": "http://x"},
                                                     {"name": "value", "valueCode": "c"}]}))
    assert added["_birthDate"] == {"extension": [{"url": "http://x", "valueCode": "c"}]}
    assert patch(born, op("replace", "Patient.birthDate.extension[0].value",
                          value={"valueString": "w"}))["_birthDate"]["extension"][0] \
        == {"url": "http://example.org/x", "valueString": "w"}


def test_choice_elements() -> None:
    """A choice is named without its type (FHIRPath) or with it (JSON); the value's type picks
    the JSON name, and replace may change it (https://hl7.org/fhir/R4/formats.html#choice)."""
    assert patch(pt(), op("add", "Patient", name="deceased", value={"valueBoolean": True})) \
        == pt(deceasedBoolean=True)
    assert patch(pt(deceasedBoolean=True), op("replace", "Patient.deceased",
                                              value={"valueDateTime": "2020-01-01"})) \
        == pt(deceasedDateTime="2020-01-01")
    assert patch(pt(deceasedBoolean=True, gender="male"), op("delete", "Patient.deceased")) \
        == pt(gender="male")
    obs = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
           "valueQuantity": {"value": 1, "unit": "kg"}}
    for path in ("Observation.value.ofType(Quantity).value", "Observation.valueQuantity.value",
                 "Observation.value.as(Quantity).value"):
        assert patch(obs, op("replace", path, value={"valueDecimal": 2}))["valueQuantity"] \
            == {"value": 2, "unit": "kg"}, path
    assert patch(obs, op("delete", "Observation.value.ofType(string)")) == obs  # nothing found
    # the key order of the resource is kept when a choice changes type
    assert list(patch(obs, op("replace", "Observation.value", value={"valueString": "s"}))) \
        == ["resourceType", "id", "status", "code", "valueString"]


def test_path_subset() -> None:
    """where(), indexes, first/last/tail/skip/take/single, extension(), a leading %resource or
    element name, backtick names, string escapes, and resolve() into contained resources."""
    start = pt(identifier=[{"use": "official", "system": "a", "value": "1"},
                           {"use": "usual", "system": "b", "value": "2"},
                           {"system": "b", "value": "3"}],
               name=[{"given": ["A"]}, {"given": ["B", "C"]}])

    def value_after(path: str) -> list[str]:
        out = patch(start, op("replace", path, value={"valueString": "X"}))
        return [i["value"] for i in out["identifier"]]

    assert value_after("Patient.identifier.where(use = 'official').value") == ["X", "2", "3"]
    assert value_after("Patient.identifier.where(system = 'b' and value = '3').value") \
        == ["1", "2", "X"]
    assert value_after("Patient.identifier.where(value = %resource.identifier[1].value).value") \
        == ["1", "X", "3"]
    assert value_after("identifier.last().value") == ["1", "2", "X"]
    assert value_after("Patient.identifier.first().value") == ["X", "2", "3"]
    assert value_after("Patient.identifier.tail().first().value") == ["1", "X", "3"]
    assert value_after("Patient.identifier.skip(2).value") == ["1", "2", "X"]
    assert value_after("Patient.identifier.take(1).single().value") == ["X", "2", "3"]
    assert value_after("%resource.identifier[1].`value`") == ["1", "X", "3"]
    assert value_after("(Patient.identifier)[2].value") == ["1", "2", "X"]
    given = patch(start, op("delete", "Patient.name.given[1]"))["name"]
    assert given == [{"given": ["A"]}, {"given": ["C"]}]  # indexes count across the names
    assert patch(start, op("delete", "Patient.name.given.where($this = 'C')"))["name"][1] \
        == {"given": ["B"]}
    quoted = pt(identifier=[{"value": "it's"}])
    assert patch(quoted, op("delete", r"Patient.identifier.where(value = 'it\'s')")) == pt()
    contained = {"resourceType": "Observation", "id": "o", "status": "final",
                 "code": {"text": "x"}, "subject": {"reference": "#p1"},
                 "contained": [{"resourceType": "Patient", "id": "p1", "gender": "male"}]}
    out = patch(contained, op("replace", "Observation.subject.resolve().gender",
                              value={"valueCode": "female"}))
    assert out["contained"][0]["gender"] == "female"
    out = patch(contained, op("add", "Observation.contained.ofType(Patient)", name="active",
                              value={"valueBoolean": True}))
    assert out["contained"][0]["active"] is True
    assert patch(contained, op("add", "Observation.contained[0]", name="name",
                               value={"valueHumanName": {"family": "F"}}))["contained"][0]["name"] \
        == [{"family": "F"}]


def test_resources_as_values() -> None:
    """A resource (Parameters.parameter.part.resource) goes where a resource element is."""
    org = {"resourceType": "Organization", "id": "o1", "name": "Acme"}
    out = patch(pt(), op("add", "Patient", name="contained", value={"resource": org}))
    assert out["contained"] == [org]
    e = refused(pt(), op("add", "Patient", name="managingOrganization", value={"resource": org}))
    assert e.status == 422 and "does not fit" in str(e)


def test_value_types_are_checked() -> None:
    """"The type of the value must be correct for the place at which it will be added/inserted.
    Servers SHALL return an error if the type is wrong": 422. Primitives of one JSON kind fit
    each other (valueString for a code or an xhtml div; the format is validated with the
    result), as does a Quantity for its profiles (Age, Duration, ...)."""
    for path, name, value in (
        ("Patient", "gender", {"valueBoolean": True}),
        ("Patient", "gender", {"valueCodeableConcept": {"text": "male"}}),
        ("Patient", "birthDate", {"valueInteger": 1974}),
        ("Patient", "active", {"valueString": "true"}),
        ("Patient", "name", {"valueIdentifier": {"value": "x"}}),
        ("Patient", "deceased", {"valueString": "yes"}),
        ("Patient", "contact", {"valueHumanName": {"text": "x"}}),
        ("Patient", "maritalStatus", {"part": [{"name": "text", "valueCoding": {"code": "x"}}]}),
    ):
        e = refused(pt(), op("add", path, name=name, value=value))
        assert e.status == 422, (name, value)
    assert patch(pt(), op("add", "Patient", name="gender", value={"valueString": "male"})) \
        == pt(gender="male")
    div = '<div xmlns="http://www.w3.org/1999/xhtml">new</div>'
    narrative = pt(text={"status": "generated",
                         "div": '<div xmlns="http://www.w3.org/1999/xhtml">old</div>'})
    assert patch(narrative, op("replace", "Patient.text.div",
                               value={"valueString": div}))["text"]["div"] == div
    cond = {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/p"}}
    out = patch(cond, op("add", "Condition", name="onset",
                         value={"valueAge": {"value": 40, "unit": "a"}}))
    assert out["onsetAge"] == {"value": 40, "unit": "a"}


def test_what_cannot_apply_is_422() -> None:
    """Well-formed operations that do not apply to this resource: nothing found (except for
    delete), several elements found, add onto a value, indexes out of range, not a list."""
    start = pt(gender="male", name=[{"given": ["A", "B"]}], identifier=IDS[:2])
    cases = [
        (op("replace", "Patient.birthDate", value={"valueDate": "2000"}), "No content found"),
        (op("add", "Patient.identifier.where(use = 'official').period", name="end",
            value={"valueDateTime": "2021-12-01"}), "No content found"),
        (op("replace", "Patient.name.given", value={"valueString": "X"}), "matches 2 elements"),
        (op("delete", "Patient.identifier"), "matches 2 elements"),
        (op("add", "Patient", name="gender", value={"valueCode": "female"}), "already has"),
        (op("insert", "Patient.identifier", index=3, value={"valueIdentifier": IDS[2]}),
         "past the end"),
        (op("move", "Patient.identifier", source=2, destination=0), "source 2"),
        (op("move", "Patient.identifier", source=0, destination=2), "destination 2"),
        (op("insert", "Patient.gender", index=0, value={"valueCode": "male"}), "not a list"),
        (op("replace", "Patient.identifier.single().value", value={"valueString": "x"}),
         "single()"),
        (op("replace", "Patient.gender.resolve()", value={"valueCode": "male"}), "Reference"),
    ]
    for bad, words in cases:
        e = refused(start, bad)
        assert e.status == 422, (bad, str(e))
        assert words in str(e), (words, str(e))
        assert e.issues[0].expression[0] == "Parameters.parameter[0]"
    # the second operation fails: the whole patch fails (nothing is half-applied by the caller)
    e = refused(start, op("delete", "Patient.gender"), op("delete", "Patient.identifier"))
    assert e.issues[0].expression[0] == "Parameters.parameter[1]"
    assert patch(start, op("delete", "Patient.birthDate")) == start  # delete of nothing: no-op


def test_malformed_patches_are_400() -> None:
    """What is not a FHIRPath Patch Parameters, or uses a path a patch may not, is a 400 that
    names the parameter or part at fault."""
    ok = [{"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.x"}]
    cases: list[tuple[Json, str]] = [
        ({"parameter": [{"name": "op", "part": ok}]}, "Parameters.parameter[0].name"),
        ({"parameter": [{"name": "operation"}]}, "Parameters.parameter[0]"),
        ({"parameter": [{"name": "operation", "part": ok[1:]}]}, "Parameters.parameter[0]"),
        ({"parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "remove"}, ok[1]]}]}, "Parameters.parameter[0].part[0]"),
        ({"parameter": [{"name": "operation", "part": [ok[0]]}]}, "Parameters.parameter[0]"),
        ({"parameter": [{"name": "operation", "part": [*ok, ok[0]]}]},
         "Parameters.parameter[0].part[2]"),
        ({"parameter": [{"name": "operation", "part": [
            *ok, {"name": "colour", "valueString": "x"}]}]}, "Parameters.parameter[0].part[2]"),
        ({"parameter": [{"name": "operation", "part": [
            *ok, {"name": "index", "valueInteger": 1}]}]}, "Parameters.parameter[0].part[2]"),
        ({"parameter": [{"name": "operation", "part": [
            ok[0], {"name": "path", "valueInteger": 1}]}]}, "Parameters.parameter[0].part[1]"),
        ({"parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.name"},
            {"name": "index", "valueInteger": -1},
            {"name": "value", "valueHumanName": {"text": "x"}}]}]},
         "Parameters.parameter[0].part[2]"),
        ({"parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "Patient"},
            {"name": "value"}]}]}, "Parameters.parameter[0].part[2]"),
        ({"parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "x"},
            {"name": "value", "valueString": "a", "valueCode": "b"}]}]}, "Parameters.parameter"),
        ({"parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.name[("}]}]},
         "Parameters.parameter[0].part[1]"),
        ({"parameter": "operation"}, "Parameters.parameter"),
        ({"parameter": [{"name": "operation", "valueInteger": "1"}]}, "Parameters.parameter[0]"),
    ]
    for body, where in cases:
        with pytest.raises(FhirError) as info:
            parse_fhirpath_patch({"resourceType": "Parameters", **body})
        assert info.value.status == 400, body
        exprs = [x for i in info.value.issues for x in i.expression]
        assert any(x.startswith(where) for x in exprs), (body, exprs)


def test_paths_a_patch_may_not_use_are_400() -> None:
    """Unknown element names, functions outside the subset, expressions that are not paths,
    resolve() to another resource, replacing or deleting the resource itself."""
    start = pt(gender="male", managingOrganization={"reference": "Organization/1"},
               name=[{"given": ["A"]}])
    for bad in (
        op("delete", "Patient.nmae"),
        op("delete", "Observation.status"),
        op("delete", "Patient.name.count()"),
        op("delete", "Patient.name.given.exists()"),
        op("delete", "Patient.gender = 'male'"),
        op("delete", "Patient.name | Patient.telecom"),
        op("delete", "Patient.name[0].given.extension.url.value"),
        op("delete", "Patient.managingOrganization.resolve().name"),
        op("delete", "Patient.name.where(given.nosuchfunction())"),
        op("delete", "Patient.name.skip(one)"),
        op("delete", "Patient.name.first(1)"),
        op("delete", "Patient"),
        op("replace", "Patient", value={"valueString": "x"}),
        op("insert", "Patient.name.first()", index=0, value={"valueHumanName": {"text": "x"}}),
        op("add", "Patient", name="favouriteColour", value={"valueString": "blue"}),
    ):
        e = refused(start, bad)
        assert e.status == 400, (bad, str(e))
