"""The audit trail: an R4 AuditEvent (https://hl7.org/fhir/R4/auditevent.html), shaped after
IHE Basic Audit Log Patterns (https://profiles.ihe.net/ITI/BALP/), for every FHIR interaction
and every security event of the authorization server, durable before the answer leaves
(group commit), never editable, and readable only by those allowed to (smart_apps.audit.access).

- events: AuditEvent resources built from a request and its response, or a SecurityEvent (pure);
- writer: the per-process group-commit writer;
- access: who may read AuditEvents, and the refusal of every change to them;
- plugin: the hooks (fhir_server.config.DEFAULT_PLUGINS names it)."""
