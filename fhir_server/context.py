"""The per-server context handed to interactions: store, configuration, hooks, search."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from fhir_server.config import Config
from fhir_server.hooks import Hooks
from fhir_server.store.base import ResourceStore, StoreTx

if TYPE_CHECKING:
    from fhir_server.request import FhirRequest, FhirResponse
    from fhir_server.routing import Route
    from fhir_server.search.engine import SearchEngine


class OperationRouter(Protocol):
    """What the dispatcher needs of the operations registry (operations.registry implements
    it; fhir_server does not import the operations package)."""

    def invoke(self, ctx: Context, req: FhirRequest, route: Route) -> FhirResponse:
        """Run `$operation` at `route`."""
        ...

    def definition(self, def_id: str) -> dict[str, Any] | None:
        """The OperationDefinition with this id, or None."""
        ...


@dataclass
class Context:
    """What every interaction may use. `tx` is set while a transaction Bundle runs, so every
    entry writes into that one database transaction; `request` while a request is served."""

    store: ResourceStore
    config: Config
    hooks: Hooks
    tx: StoreTx | None = None
    operations: OperationRouter | None = None
    request: FhirRequest | None = None  # the request being served (None outside one)
    # per-server state that plugins keep, by their module name (shared by every copy)
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def search_engine(self) -> SearchEngine:
        """The process-wide search engine (stateless; its compiled registries are shared)."""
        from fhir_server.search.engine import get_engine

        return get_engine()

    def serving(self, req: FhirRequest) -> Context:
        """This context while `req` is served: hooks and access checks see its caller."""
        return replace(self, request=req)

    def within(self, tx: StoreTx) -> Context:
        """This context with every write going to `tx`."""
        return replace(self, tx=tx)

    @contextmanager
    def writing(self) -> Iterator[StoreTx]:
        """The open transaction, or a new one that commits when the block ends."""
        if self.tx is not None:
            yield self.tx
            return
        with self.store.transaction() as tx:
            yield tx
