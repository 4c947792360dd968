"""Errors as OperationOutcomes.

Every failure the server reports is an OperationOutcome with an HTTP status
(https://hl7.org/fhir/R4/http.html#Status-Codes and
https://hl7.org/fhir/R4/operationoutcome.html).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue (https://hl7.org/fhir/R4/operationoutcome-definitions.html)."""

    severity: str  # fatal | error | warning | information
    code: str  # http://hl7.org/fhir/ValueSet/issue-type, e.g. invalid, required, value, not-found
    diagnostics: str
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


def operation_outcome(issues: list[Issue] | tuple[Issue, ...]) -> dict[str, Any]:
    """Build an OperationOutcome resource from issues (at least one issue is required by R4)."""
    if not issues:
        issues = [Issue("information", "informational", "All OK")]
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


@dataclass
class FhirError(Exception):
    """An error to answer with `status` and an OperationOutcome of `issues`."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, status: int, code: str, diagnostics: str, expression: str | None = None
    ) -> FhirError:
        expr = (expression,) if expression else ()
        return cls(status, [Issue("error", code, diagnostics, expr)])

    def __str__(self) -> str:
        return f"{self.status}: " + "; ".join(i.diagnostics for i in self.issues)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)
