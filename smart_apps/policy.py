"""What a principal's SMART scopes allow: which interactions (type level) and which resources
(row level, as fhir_server.access Restrictions). Pure functions of the Principal.

- `system/` scopes: every resource of the type.
- `user/` scopes: every resource of the type for a practitioner; a user whose fhirUser is a
  Patient sees only that patient's compartment.
- `patient/` scopes: the Patient compartment of the patient in context
  (https://hl7.org/fhir/R4/compartmentdefinition-patient.html); resource types that cannot be
  in a Patient compartment (Medication, Practitioner, Organization, Location, ...) are not
  patient data and are readable whole. Without a patient in context they grant nothing.
- Granular v2 scopes (`?category=...`) grant only resources matching their search parameters.

Permission letters (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
c create; r read, vread, history of one resource; u update, patch; d delete; s search, type and
system history."""

from __future__ import annotations

from functools import lru_cache

from fhir_server.access import Grant, Restriction
from fhir_server.principal import Principal
from resources.compartments import compartment_resource_types
from resources.types import RESOURCE_TYPES
from smart_apps.scopes import ResourceScope, resource_scopes

INTERACTION_PERMISSION = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "search-type": "s",
    "search-system": "s",
    "search-compartment": "s",
    "history-type": "s",
    "history-system": "s",
    "create": "c",
    "update": "u",
    "conditional-update": "u",
    "patch": "u",
    "conditional-patch": "u",
    "delete": "d",
    "conditional-delete": "d",
}
"""The permission letter each REST interaction needs (fhir_server.interactions.registry)."""

ACTION_PERMISSION = {"read": "r", "search": "s", "create": "c", "update": "u", "delete": "d"}
"""fhir_server.access actions to permission letters."""


@lru_cache(maxsize=1)
def outside_patient_compartment() -> frozenset[str]:
    """Resource types that can never be members of a Patient compartment."""
    return frozenset(RESOURCE_TYPES) - frozenset(compartment_resource_types("Patient"))


def _patient_of(scope: ResourceScope, p: Principal) -> str | None | bool:
    """The patient a scope is limited to; False when it grants nothing; None: unlimited."""
    if scope.context == "system":
        return None
    if scope.context == "user":
        if p.fhir_user and p.fhir_user.startswith("Patient/"):
            return p.fhir_user.split("/", 1)[1]
        return None
    return p.patient or False


def permits(p: Principal, perm: str, res_type: str | None) -> bool:
    """Whether some scope of `p` grants `perm` on `res_type` (None: on some type)."""
    for s in resource_scopes(p.scopes):
        if perm in s.perms and (res_type is None or s.covers(res_type)) \
                and _patient_of(s, p) is not False:
            return True
    return False


def restriction(p: Principal, perm: str) -> Restriction | None:
    """Which resources `p` may touch with `perm`, or None when every resource of every type
    it has the permission on (type-level checks are `permits`)."""
    return _restriction(p.scopes, p.fhir_user, p.patient, perm)


@lru_cache(maxsize=2048)
def _restriction(
    scopes: tuple[str, ...], fhir_user: str | None, patient: str | None, perm: str
) -> Restriction | None:
    p = Principal(kind="user", scopes=scopes, fhir_user=fhir_user, patient=patient)
    grants: list[Grant] = []
    for s in resource_scopes(scopes):
        if perm not in s.perms:
            continue
        limit = _patient_of(s, p)
        if limit is False:
            continue
        types = None if s.res_type == "*" else frozenset({s.res_type})
        if limit is None:
            grants.append(Grant(types, None, s.query))
            continue
        grants.append(Grant(types, ("Patient", str(limit)), s.query))
        outside = outside_patient_compartment()
        free = outside if types is None else types & outside
        if free:
            grants.append(Grant(frozenset(free), None, s.query))
    if any(g.types is None and g.whole for g in grants):
        return None
    who = f"Patient/{patient}" if patient else (fhir_user or "this client")
    return Restriction(tuple(grants), reason=f"the granted scopes do not cover it for {who}")
