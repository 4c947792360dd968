"""`$validate`: check a resource without storing it
(https://hl7.org/fhir/R4/resource-operation-validate.html, https://hl7.org/fhir/R4/validation.html).

`POST [type]/$validate` takes the resource as the body or in a Parameters resource (with `mode`
and `profile`); `[type]/[id]/$validate` (GET or POST) validates the stored resource unless one is
given. The base rules are the write path's structure validation (resources.validation, what
create and update enforce) plus the invariants of the core resource definition; a `profile`
(parameter or query) and the profiles the resource claims in meta.profile are checked with the
profiles the server ships (resources.profiles). The answer is always 200 with an
OperationOutcome listing what was found ("no issues" when valid); an unknown `profile` is an
error issue naming it; `mode=delete` warns of the resources that refer to the one to delete.
Only an unusable invocation (no resource, an unknown mode) is a 400.
Nothing is ever stored."""

from __future__ import annotations

from typing import Any

from fhir_server.access import restrictions
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.request import FhirResponse
from operations.registry import OperationCall, operation
from resources import json_numbers
from resources.profiles import CORE_PREFIX, is_known, validate_profile
from resources.types import is_resource_type
from resources.validation import ValidationIssue, validate_resource

MODES = ("create", "update", "delete", "profile")


def _issue(p: ValidationIssue) -> Issue:
    return Issue(p.severity, p.code, p.diagnostics, (p.expression,) if p.expression else ())


def validate(resource: dict[str, Any], res_type: str | None, mode: str | None,
             res_id: str | None, profile: str | None) -> list[Issue]:
    """Every problem of `resource` as OperationOutcome issues (empty: valid). Pure: the
    caller has already settled what the mode needs of the store."""
    issues: list[Issue] = []
    rtype = resource.get("resourceType")
    if res_type is not None and rtype != res_type:
        issues.append(Issue("error", "invalid", f"resourceType '{rtype}' does not match the type "
                            f"'{res_type}' of the URL", ("resourceType",)))
    base = validate_resource(resource)
    issues.extend(_issue(p) for p in base)
    if not isinstance(rtype, str) or not is_resource_type(rtype):
        return issues
    if mode == "update":
        given = resource.get("id")
        if not given:
            issues.append(Issue("error", "required", "An update needs the resource's id",
                                (f"{rtype}.id",)))
        elif res_id is not None and given != res_id:
            issues.append(Issue("error", "invalid", f"The resource's id '{given}' does not match "
                                f"the id '{res_id}' of the URL", (f"{rtype}.id",)))
    elif mode == "create" and resource.get("id"):
        issues.append(Issue("information", "informational", "On create the server assigns the "
                            "id; the id given is ignored", (f"{rtype}.id",)))
    flagged = {p.expression for p in base if p.severity in ("error", "fatal")}
    profiles = [CORE_PREFIX + rtype]
    meta = resource.get("meta")
    claimed = meta.get("profile") if isinstance(meta, dict) else None
    for url in claimed if isinstance(claimed, list) else []:
        if not isinstance(url, str):
            continue
        if is_known(url):
            profiles.append(url)
        else:
            issues.append(Issue("warning", "not-supported", f"The profile {url} the resource "
                                "claims is not known to this server and was not checked",
                                (f"{rtype}.meta.profile",)))
    if profile is not None:
        if is_known(profile):
            profiles.append(profile)
        else:
            issues.append(Issue("error", "not-supported", f"The profile {profile} is not known "
                                "to this server, so the resource cannot be validated against it",
                                ("profile",)))
    for url in dict.fromkeys(p.split("|", 1)[0] for p in profiles):
        for p in validate_profile(resource, url):
            if p.expression not in flagged:  # the base rules already said what is wrong there
                issues.append(_issue(p))
    return issues


@operation("OperationDefinition-Resource-validate", affects_state=False, needs=("{type}.r",))
def validate_operation(call: OperationCall) -> FhirResponse:
    """Validate the resource given (or, at instance level, the stored one) for `mode`."""
    mode = call.params.get("mode")
    if mode is not None and mode not in MODES:
        raise FhirError.of(400, "invalid", f"Unknown $validate mode '{mode}'; use one of "
                           f"{', '.join(MODES)}", "mode")
    resource = call.params.get("resource")
    stored = None
    if call.level == "instance":
        if mode == "delete":
            stored = (call.ctx.tx or call.ctx.store).read(call.res_type or "", call.res_id or "")
        else:
            stored = call.target()
    issues: list[Issue] = []
    if mode == "delete":
        if call.level != "instance":
            raise FhirError.of(400, "invalid", "$validate with mode=delete is invoked on the "
                               "resource to delete: [type]/[id]/$validate", "mode")
        if stored is None or stored.deleted:
            issues.append(Issue("error", "not-found", f"{call.res_type}/{call.res_id} does not "
                                "exist, so it cannot be deleted"))
        else:
            issues.extend(_referenced_by(call))
        return _answer(issues)
    if resource is None:
        if stored is None:
            raise FhirError.of(400, "required", "$validate needs a resource: POST it as the body "
                               "or in the 'resource' parameter of a Parameters resource",
                               "resource")
        assert stored.body is not None
        resource = json_numbers.loads(stored.body)
    assert isinstance(resource, dict)
    return _answer(validate(resource, call.res_type, mode, call.res_id, call.params.get("profile")))


_SHOWN_REFERRERS = 10


def _referenced_by(call: OperationCall) -> list[Issue]:
    """A warning naming the resources (that the caller may see) whose reference search
    parameters point at the one to delete: one `_revinclude=*` probe of the reference index.
    Deleting it is allowed (the server keeps no referential integrity); they would dangle."""
    q = call.ctx.tx or call.ctx.store
    found = call.ctx.search_engine.search(
        q, call.res_type, [("_id", call.res_id or ""), ("_revinclude", "*")],
        restriction=restrictions(call.ctx, call.req, "search"))
    if not found.include_pks:
        return []
    refs = q.load_bodies(found.include_pks[:_SHOWN_REFERRERS])
    names = sorted(f"{r.res_type}/{r.res_id}" for r in refs.values())
    more = len(found.include_pks) - len(names)
    listed = ", ".join(names) + (f" and {more} more" if more > 0 else "")
    return [Issue("warning", "business-rule", f"{call.res_type}/{call.res_id} is referred to by "
                  f"{len(found.include_pks)} resource(s): {listed}; after a delete their "
                  "references would not resolve")]


def _answer(issues: list[Issue]) -> FhirResponse:
    if not issues:
        issues = [Issue("information", "informational", "No issues: the resource is valid")]
    return FhirResponse(200, resource=operation_outcome(issues))
