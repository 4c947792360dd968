"""The gateway's one path for a message, whichever way it came (MLLP, $ingest-hl7v2):
decide its ACK, record it in the inbox, apply it to the FHIR store.

1. `decide`: parse and map the message (no I/O); the errors make the ACK (AA, AE or AR with
   ERR segments, HL7 v2.5 section 2.9) and the planned resources are checked against the R4
   structure definitions, so content the store would refuse is refused now, with an AE.
2. `record`: the message and its ACK are committed to the inbox (a duplicate takes the ACK of
   the first); only then is the ACK sent.
3. `process`: pending rows are applied in order, each message's FHIR transaction and its
   `done` mark in one database transaction. A failure there moves the row to the error queue.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fhir_server.context import Context
from fhir_server.errors import FhirError
from fhir_server.writes import check_resource
from hl7v2_gateway import inbox
from hl7v2_gateway.ack import AckDecision, build_ack, not_hl7_ack, response_code
from hl7v2_gateway.apply import Applier, ApplyFailed
from hl7v2_gateway.er7 import Message
from hl7v2_gateway.errors import Hl7Error
from hl7v2_gateway.mapping import map_message
from hl7v2_gateway.plan import Plan
from hl7v2_gateway.settings import GatewaySettings
from resources import json_numbers

log = logging.getLogger("telefhir.hl7")
PROCESSING_IDS = {"P", "T", "D"}


def decode(data: bytes) -> tuple[str, str]:
    """The message text and the codec to answer in: UTF-8, else ISO 8859-1 (MSH-18 8859/1).
    NUL characters (which no HL7 message holds and PostgreSQL text cannot store) become
    U+FFFD."""
    try:
        text, codec = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        text, codec = data.decode("latin-1"), "latin-1"
    return text.replace("\x00", "\ufffd"), codec


@dataclass
class Decision:
    """A message with its ACK decided, ready to record."""

    received: inbox.Received
    codec: str
    plan: Plan | None
    msg: Message | None


def check_plan(plan: Plan) -> list[Hl7Error]:
    """Structure errors of the planned resources (as an AE names them: 207 with the path)."""
    out = []
    for p in plan.items.values():
        try:
            check_resource(p.body, p.res_type)
        except FhirError as err:
            text = "; ".join(i.diagnostics for i in err.issues)
            out.append(Hl7Error(207, f"The {p.res_type} mapped from the message is not valid "
                                     f"FHIR: {text}"))
    return out


def _transient(exc: BaseException) -> bool:
    """A failure worth trying again: a deadlock or serialization failure of the database, a
    version conflict (409/412) from a writer that got there first."""
    if isinstance(exc, ApplyFailed):
        return exc.status in (409, 412) and "several" not in exc.text
    if isinstance(exc, FhirError):
        return exc.status == 409
    return type(exc).__name__ in ("DeadlockDetected", "SerializationFailure",
                                  "LockNotAvailable", "OperationalError")


class Gateway:
    """Message handling for one server context (shared by every connection)."""

    def __init__(self, ctx: Context, settings: GatewaySettings) -> None:
        self.ctx = ctx
        self.settings = settings
        inbox.ensure(ctx.store)
        self._plans: OrderedDict[int, Plan] = OrderedDict()  # recently received, by row id
        self._lock = threading.Lock()

    # -- 1. decide ----------------------------------------------------------------------

    def decide(self, data: bytes, peer: str | None = None) -> Decision:
        """Parse and map `data`; never raises."""
        text, codec = decode(data)
        try:
            msg = Message.parse(text)
        except Hl7Error as err:
            return self._not_hl7(text, codec, err, peer)
        errors: list[Hl7Error] = []
        plan: Plan | None = None
        control_id = msg.control_id
        try:
            if not control_id:
                raise Hl7Error(101, "MSH-10 (message control id) is required", "MSH", 1, 10,
                               reject=True)
            if msg.processing_id.upper() not in PROCESSING_IDS:
                raise Hl7Error(202, f"MSH-11 processing id '{msg.processing_id}' is not "
                                    "P, T or D", "MSH", 1, 11)
            plan = map_message(msg, self.settings)
            errors = check_plan(plan)
        except Hl7Error as err:
            errors = [err]
        except Exception as exc:  # a mapping bug must still answer, and be queued
            log.exception("mapping %s %s failed", msg.message_type, control_id)
            errors = [Hl7Error(207, f"Internal error while mapping: {exc}")]
        warnings = [] if plan is None else [
            Hl7Error(w.code, w.text, w.segment, w.sequence, w.field, w.component, w.reject, "W")
            for w in plan.warnings]
        decision = AckDecision.of(errors, warnings)
        code = response_code(msg, decision)
        ack = build_ack(msg, code, decision.errors, self.settings.application,
                        self.settings.facility) if code else None
        received = inbox.Received(
            raw=text, sender_key=msg.sender_key, control_id=control_id or None,
            message_type=f"{msg.message_type}^{msg.trigger_event}", ack=ack,
            ack_code=decision.code, status="pending" if decision.code == "AA" else "error",
            reason="; ".join(str(e) for e in errors) or None,
            location=errors[0].location if errors else None, peer=peer,
            plan=json_numbers.dumps(plan.to_json()).decode()
            if plan is not None and decision.code == "AA" else None)
        return Decision(received, codec, plan if decision.code == "AA" else None, msg)

    def _not_hl7(self, text: str, codec: str, err: Hl7Error, peer: str | None) -> Decision:
        reason = str(err)
        ack = not_hl7_ack(err, text, self.settings.application)
        received = inbox.Received(raw=text[:1_000_000], sender_key="?", control_id=None,
                                  message_type=None, status="error", ack=ack, ack_code="AR",
                                  reason=reason, location=err.location or None, peer=peer)
        return Decision(received, codec, None, None)

    def garbage(self, data: bytes, peer: str | None, why: str) -> Decision:
        """A decision for bytes that are not a frame at all (AR, and an error-queue entry)."""
        text, codec = decode(data)
        return self._not_hl7(text, codec, Hl7Error(100, why, reject=True), peer)

    # -- 2. record ----------------------------------------------------------------------

    def record(self, decisions: list[Decision],
               more: Callable[[], list[Decision]] | None = None) -> None:
        """Commit `decisions` to the inbox in one transaction (group commit). `more`, once the
        transaction holds the write lock, gives the messages that arrived while it waited for
        it (appended to `decisions`): they are committed in the same transaction rather than
        waiting for the next one."""
        with self.ctx.store.transaction() as tx:
            if more is not None:
                decisions.extend(more())
            inbox.record(tx, [d.received for d in decisions])
        with self._lock:
            for d in decisions:
                r = d.received
                if d.plan is not None and not r.duplicate and r.row_id is not None:
                    self._plans[r.row_id] = d.plan
            while len(self._plans) > 10_000:
                self._plans.popitem(last=False)

    # -- 3. process ---------------------------------------------------------------------

    def _plan_of(self, row: inbox.InboxRow) -> Plan:
        with self._lock:
            plan = self._plans.pop(row.id, None)
        if plan is not None:
            return plan
        if row.plan:
            return Plan.from_json(json_numbers.loads(row.plan))
        msg = Message.parse(row.raw)
        return map_message(msg, self.settings)

    def _apply(self, tx: Any, row: inbox.InboxRow) -> None:
        plan = self._plan_of(row)
        applied = Applier(self.ctx, tx).apply(plan)
        inbox.mark_done(tx, row.id, json_numbers.dumps(applied.refs).decode())

    def process_pending(self, limit: int = 50,
                        should_yield: Callable[[], bool] | None = None) -> int:
        """Apply up to `limit` pending rows in one transaction (one by one if that fails);
        the number of rows handled. `should_yield` is asked after each message: when it says
        so (messages are waiting to be recorded, and on SQLite they need the write lock this
        transaction holds), the transaction commits early, so ACKs are not held up."""
        try:
            handled = 0
            with self.ctx.store.transaction() as tx:
                rows = inbox.claim(tx, limit)
                for row in rows:
                    self._apply(tx, row)
                    handled += 1
                    if should_yield is not None and should_yield():
                        break
            return handled
        except (ApplyFailed, Hl7Error, FhirError, ValueError, KeyError, TypeError) as exc:
            log.info("batch failed (%s); applying its messages one by one", exc)
        except Exception as exc:
            if not _transient(exc):
                raise
            log.info("batch failed (%s); applying its messages one by one", exc)
        handled = 0
        with self.ctx.store.transaction() as tx:
            ids = [r.id for r in inbox.claim(tx, limit)]
        for row_id in ids:
            self.process_one(row_id)
            handled += 1
        return handled

    def process_one(self, row_id: int, tries: int = 5) -> str:
        """Apply one pending row now; its status afterwards (done, error, or what it was).
        A deadlock or a concurrent update is retried; other failures go to the error queue."""
        try:
            for attempt in range(tries):
                try:
                    with self.ctx.store.transaction() as tx:
                        row = inbox.claim_one(tx, row_id)
                        if row is None:
                            current = inbox.get(tx, row_id)
                            return current.status if current else "missing"
                        self._apply(tx, row)
                        return "done"
                except Exception as exc:
                    if attempt == tries - 1 or not _transient(exc):
                        raise
                    time.sleep(0.05 * (attempt + 1))
            return "pending"
        except Exception as exc:
            if isinstance(exc, Hl7Error):
                reason, location = str(exc), exc.location or None
            elif isinstance(exc, ApplyFailed):
                reason, location = f"The FHIR store refused the message: {exc}", None
            else:
                log.exception("applying inbox row %d failed", row_id)
                reason, location = f"{type(exc).__name__}: {exc}", None
            with self.ctx.store.transaction() as tx:
                inbox.mark_error(tx, row_id, reason, location)
            return "error"

    def replay(self, row_id: int) -> str:
        """Reprocess an error-queue row (after a fix of the mapping or the data): re-mapped
        from its raw text; the status it ends in."""
        with self.ctx.store.transaction() as tx:
            row = inbox.get(tx, row_id)
            if row is None:
                raise LookupError(f"inbox row {row_id} does not exist")
            if row.status != "error":
                raise ValueError(f"inbox row {row_id} is {row.status}, not in the error queue")
            if row.control_id is None and row.message_type is None:
                raise ValueError(f"inbox row {row_id} is not an HL7 message: nothing to replay")
            try:
                msg = Message.parse(row.raw)
                plan = map_message(msg, self.settings)
                problems = check_plan(plan)
                if problems:
                    raise problems[0]
            except Hl7Error as err:
                inbox.mark_error(tx, row_id, str(err), err.location or None)
                return "error"
            inbox.requeue(tx, row_id)
        with self._lock:
            self._plans[row_id] = plan
        return self.process_one(row_id)

    # -- everything at once ($ingest-hl7v2) ---------------------------------------------

    def ingest(self, data: bytes, peer: str | None = None) -> tuple[Decision, str]:
        """Decide, record and apply one message now (as MLLP does, without waiting for the
        processor); the decision and the row's final status."""
        d = self.decide(data, peer)
        self.record([d])
        r = d.received
        if r.duplicate or r.row_id is None:
            with self.ctx.store.transaction() as tx:
                row = inbox.get(tx, r.row_id) if r.row_id is not None else None
            return d, row.status if row else "error"
        if r.status != "pending":
            return d, r.status
        return d, self.process_one(r.row_id)
