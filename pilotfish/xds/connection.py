"""One proxy's ADS stream as a state machine without I/O (SotW and Delta).

:class:`ProxyConnection` takes requests (:meth:`~ProxyConnection.handle_request`), new
snapshots (:meth:`~ProxyConnection.begin_push`) and the passing of time
(:meth:`~ProxyConnection.check_timeout`) and returns the responses to write, in order. The
gRPC layer (``server.py``) only reads, generates and writes; tests drive this class directly.

A push runs the steps of :func:`~pilotfish.xds.ordering.plan_push` one after the other: the next
step is sent once every type of the previous one is answered (ACK or NACK) or ``ack_timeout``
has passed. Requests keep being served meanwhile (first requests, subscription changes), which
Envoy needs to warm the clusters and listeners it was just sent. While a push is delivered,
newly subscribed names get the newest content, names the proxy already has keep theirs until
their step comes.

Versions are content hashes per type (SotW: of the set sent; Delta: per resource, and of the
whole set for ``system_version_info``); nonces are unique per stream.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import compress
from operator import attrgetter, ne
from typing import Any, TypeAlias, TypeVar

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.api.node import NodeInfo
from pilotfish.xds.metrics import NO_METRICS, XdsMetrics, metric_type
from pilotfish.xds.ordering import Send, Step, plan_push
from pilotfish.xds.protocol import Have, Kind, TypeState, Verdict, classify_delta, classify_sotw
from pilotfish.xds.push import PushRequest, Scope
from pilotfish.xds.resources import (
    CLUSTER_TYPE,
    EMPTY_SNAPSHOT,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
    DeltaPart,
    Entry,
    EntryMap,
    Snapshot,
    short_name,
)
from pilotfish.xds.status import GenerationError, ProxyStatus

log = logging.getLogger("pilotfish.xds")

Request: TypeAlias = discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest

_HASH = attrgetter("hash")


class DeltaResponse:
    """A ``DeltaDiscoveryResponse`` whose resources are the shared, already encoded entries.

    :meth:`SerializeToString` writes the small header (version, type, nonce, removals,
    control plane) and appends each entry's encoded ``resources`` field (protobuf fields may
    come in any order), so sending a resource to a thousand proxies copies its bytes once per
    write, not into a new message per proxy. :meth:`message` is the equivalent protobuf
    message, for readers (tests, debugging)."""

    __slots__ = (
        "body",
        "control_plane",
        "entries",
        "nonce",
        "removed_resources",
        "system_version_info",
        "type_url",
    )

    def __init__(
        self,
        *,
        system_version_info: str,
        type_url: str,
        nonce: str,
        entries: Sequence[Entry | DeltaPart],
        removed_resources: list[str],
        control_plane: base_pb2.ControlPlane,
        body: bytes | None = None,
    ) -> None:
        #: ``entries`` already encoded and joined (a whole shared map), or None.
        self.body = body
        self.system_version_info = system_version_info
        self.type_url = type_url
        self.nonce = nonce
        self.entries = entries
        self.removed_resources = removed_resources
        self.control_plane = control_plane

    def _header(self) -> discovery_pb2.DeltaDiscoveryResponse:
        return discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=self.system_version_info,
            type_url=self.type_url,
            nonce=self.nonce,
            removed_resources=self.removed_resources,
            control_plane=self.control_plane,
        )

    @property
    def resources(self) -> list[discovery_pb2.Resource]:
        return [e.resource for e in self.entries]

    def SerializeToString(self) -> bytes:  # protobuf's name: gRPC calls it
        header = self._header().SerializeToString()
        if self.body is not None:
            return header + self.body
        return b"".join([header, *[e.delta_field for e in self.entries]])

    def message(self) -> discovery_pb2.DeltaDiscoveryResponse:
        return discovery_pb2.DeltaDiscoveryResponse.FromString(self.SerializeToString())


Response: TypeAlias = discovery_pb2.DiscoveryResponse | DeltaResponse


def content_version(hashes: Iterable[tuple[str, str]]) -> str:
    """A short version string for a set of (name, content hash) pairs."""
    # One update of the joined lines: the same digest as one update per line.
    text = "".join([f"{name}={h}\n" for name, h in sorted(hashes)])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _with_rewarm(scope: Scope | None, snapshot: Snapshot) -> Scope | None:
    """``scope`` with the load assignments of the clusters it names: Envoy re-warms a changed
    EDS cluster without asking for its endpoints again, so they are always compared too."""
    if scope is None or CLUSTER_TYPE not in scope:
        return scope
    clusters = scope[CLUSTER_TYPE]
    out = dict(scope)
    if clusters is None:
        out[ENDPOINT_TYPE] = None
        return out
    eds = out.get(ENDPOINT_TYPE, frozenset())
    if eds is not None:
        out[ENDPOINT_TYPE] = eds | _memo(("rewarm", clusters), snapshot.eds_of_cluster, _eds_names)
    return out


def _eds_names(of: Mapping[str, str], clusters: frozenset[str]) -> frozenset[str]:
    return frozenset(of[c] for c in clusters if c in of)


def _hashes(available: Mapping[str, Entry], names: frozenset[str]) -> dict[str, str]:
    return {n: e.hash for n in names if (e := available.get(n)) is not None}


#: (what, names) -> (the mapping it was computed from, the result): the proxies of one view
#: pushed the same change compute it once (a storm's endpoint pushes reach every proxy with
#: the same hundreds of names and the same shared maps). Bounded; cleared when full.
_MEMO: dict[tuple[str, frozenset[str]], tuple[Any, Any]] = {}
_MEMO_MAX = 64
T = TypeVar("T")
M = TypeVar("M", bound=Mapping[str, Any])


def _memo(
    key: tuple[str, frozenset[str]], source: M, compute: Callable[[M, frozenset[str]], T]
) -> T:
    """``compute(source, key[1])``, shared while ``source`` is the same object."""
    found = _MEMO.get(key)
    if found is not None and found[0] is source:
        result: T = found[1]
        return result
    value = compute(source, key[1])
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[key] = (source, value)
    return value


class ProxyConnection:
    """The xDS state of one stream: subscriptions, what was sent, ACKs, the push in progress."""

    def __init__(
        self,
        connection_id: str,
        node: NodeInfo,
        *,
        delta: bool,
        peer: str = "",
        ack_timeout: float = 30.0,
        control_plane_id: str = "pilotfish",
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        metrics: XdsMetrics = NO_METRICS,
    ) -> None:
        self.connection_id = connection_id
        self.metrics = metrics
        #: The snapshot as generated (what the next one is generated from); ``target`` is
        #: it plus the fallback virtual hosts made for hosts this proxy asked VHDS for.
        self._generated: Snapshot = EMPTY_SNAPSHOT
        #: VHDS: the aliases (``<route config>/<host>``) the proxy asked for, and the
        #: resource each resolves to (None: no virtual host), re-resolved at every snapshot:
        #: Envoy asks for an alias once, so the control plane keeps what answers it current.
        self._aliases: dict[str, str | None] = {}
        self.node = node
        self.delta = delta
        self.peer = peer
        self.ack_timeout = ack_timeout
        self.connected_since = clock()
        self.types: dict[str, TypeState] = {}
        self.target: Snapshot = EMPTY_SNAPSHOT
        #: The merged push waiting for the current one to finish (owned by the server).
        self.pending_push: PushRequest | None = None
        self.pushes = 0
        #: The server is generating a snapshot for this proxy (owned by the server).
        self.generating = False
        #: Why the last attempt to generate this proxy's config failed (cleared by the next
        #: success): the proxy keeps its previous config, and proxy-status says so.
        self.generation_error: GenerationError | None = None
        self._control_plane = base_pb2.ControlPlane(identifier=control_plane_id)
        self._clock = clock
        self._monotonic = monotonic
        self._seq = 0
        self._plan: list[Step] = []
        self._waiting: dict[str, int] = {}
        self._deadline: float | None = None
        self._unclean = False
        self._push: PushRequest | None = None

    # -- queries -------------------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def generated(self) -> Snapshot:
        """The snapshot as generated: what the server generates the next one from."""
        return self._generated

    @property
    def busy(self) -> bool:
        """A push is being delivered (steps left or answers awaited)."""
        return bool(self._plan or self._waiting)

    @property
    def deadline(self) -> float | None:
        """Monotonic time at which the awaited answers time out, if any are awaited."""
        return self._deadline if self._waiting else None

    @property
    def initially_synced(self) -> bool:
        """The proxy has its first configuration: it asked for listeners and answered every
        response sent so far (the connection throttle lets the next stream in)."""
        lds = self.types.get(LISTENER_TYPE)
        if lds is None or not lds.requested or lds.sent_seq == 0:
            return False
        return all(s.answered_seq >= s.sent_seq for s in self.types.values() if s.requested)

    @property
    def waiting_for(self) -> tuple[str, ...]:
        return tuple(self._waiting)

    def status(self) -> ProxyStatus:
        return ProxyStatus(
            connection_id=self.connection_id,
            node_id=self.node_id,
            cluster=self.node.cluster,
            namespace=self.node.namespace,
            pod_name=self.node.pod_name,
            proxy_type=self.node.proxy_type,
            protocol="Delta" if self.delta else "SotW",
            peer=self.peer,
            connected_since=self.connected_since,
            pushing=self.busy or self.generating or self.pending_push is not None,
            types={t: s.status() for t, s in self.types.items() if s.requested},
            ip=self.node.ip,
            interception_mode=self.node.interception_mode,
            admin_port=self.node.admin_port,
            labels=dict(self.node.labels),
            service_account=self.node.service_account,
            generation_error=self.generation_error,
        )

    # -- inputs --------------------------------------------------------------------------------

    def set_target(self, snapshot: Snapshot) -> None:
        """The snapshot first requests are answered from (at connect, before any push)."""
        self._generated = snapshot
        self.target = self._resolved(snapshot)
        self._track_on_demand()

    def _resolved(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with what the aliases the proxy asked VHDS for resolve to: the
        resources they name are pinned (kept current like subscribed names), and a host no
        virtual host matches gets its route configuration's fallback made for it, added to
        the snapshot's virtual hosts (see :mod:`pilotfish.api.vhost_directory`)."""
        state = self.types.get(VIRTUAL_HOST_TYPE)
        if not self._aliases or state is None:
            return snapshot
        directory = snapshot.directory
        available = snapshot.get(VIRTUAL_HOST_TYPE)
        made: dict[str, Entry] = {}
        for alias in self._aliases:
            if directory is None:
                name = alias if alias in available else None
            else:
                found = directory.resolve(alias)
                name = found.name
                if found.vhost is not None and name is not None:
                    made[name] = Entry(
                        VIRTUAL_HOST_TYPE, name, found.vhost.SerializeToString(deterministic=True)
                    )
            self._aliases[alias] = name
        state.pinned = frozenset(n for n in self._aliases.values() if n is not None)
        if not made:
            return snapshot
        vhosts = dict(available)
        vhosts.update(made)
        return dataclasses.replace(
            snapshot, entries={**snapshot.entries, VIRTUAL_HOST_TYPE: vhosts}
        )

    def _track_on_demand(self) -> None:
        """On-demand names apply to Delta streams only: a SotW proxy cannot ask for them."""
        if not self.delta:
            return
        on_demand = self.target.on_demand
        for type_url, state in self.types.items():
            state.on_demand = on_demand.get(type_url, frozenset())

    def handle_request(self, request: Request) -> list[Response]:
        """Process one request from the proxy; returns the responses to send, in order."""
        type_url = request.type_url
        if not type_url:
            log.warning("%s: request without type_url ignored", self.node_id)
            return []
        state = self.types.get(type_url)
        if state is None:
            state = self.types[type_url] = TypeState(type_url)
            if self.delta:
                state.on_demand = self.target.on_demand.get(type_url, frozenset())
        now = self._clock()
        if isinstance(request, discovery_pb2.DeltaDiscoveryRequest):
            verdict = classify_delta(state, request, now)
        else:
            verdict = classify_sotw(state, request, now)
        self._log_verdict(state, verdict)
        asked = type_url == VIRTUAL_HOST_TYPE and self.delta and bool(verdict.added)
        if asked:
            # Hosts Envoy asks for (on-demand virtual hosts): resolved now, answered below.
            self._aliases.update(dict.fromkeys(verdict.added))
            self.target = self._resolved(self._generated)
        if verdict.kind is Kind.NACK:
            self.metrics.rejected(metric_type(type_url))
            if self._push is not None:
                self._unclean = True
            eds = self.types.get(ENDPOINT_TYPE)
            if type_url == CLUSTER_TYPE and eds is not None:
                # Load assignments sent ahead of rejected clusters were dropped by Envoy.
                eds.forget_presented()
        out: list[Response] = []
        if asked and verdict.kind is not Kind.INITIAL:
            out.append(self._answer_aliases(state, verdict.added))
        elif verdict.respond:
            response = self._answer_subscription(state, verdict)
            if response is not None:
                out.append(response)
        out += self._advance()
        return out

    def begin_push(self, snapshot: Snapshot, request: PushRequest) -> list[Response]:
        """Start delivering ``snapshot``. Call only when not :attr:`busy`."""
        if self.busy:
            raise RuntimeError("a push is already being delivered on this connection")
        self._generated = snapshot
        snapshot = self.target = self._resolved(snapshot)
        self._track_on_demand()
        scope = _with_rewarm(request.scope, snapshot)
        requested = {
            t: s for t, s in self.types.items() if s.requested and (scope is None or t in scope)
        }
        have: dict[str, Mapping[str, str]] = {}
        want: dict[str, Mapping[str, str]] = {}
        for t, state in requested.items():
            names = None if scope is None else scope[t]
            if names is None:
                have[t], want[t] = state.have, snapshot.hashes(t)
                continue
            # Only the names the change can touch are compared: O(scope), not O(config).
            # One lookup per name (a storm's endpoint pushes compare hundreds per proxy).
            had = state.have
            if isinstance(had, Have):
                have[t] = had.pick(names)
            else:
                have[t] = {n: h for n in names if (h := had.get(n)) is not None}
            want[t] = _memo((t, names), snapshot.get(t), _hashes)
        self._plan = plan_push(
            have=have,
            want=want,
            subscriptions={t: s.subscription for t, s in requested.items()},
            eds_of_cluster=snapshot.eds_of_cluster,
            presend=self.delta,
        )
        self.pushes += 1
        self._push = request
        self._unclean = False
        if self._plan:
            log.debug(
                "%s: %s in %d steps: %s",
                self.node_id,
                request.describe(),
                len(self._plan),
                " → ".join("+".join(short_name(t) for t in s.type_urls) for s in self._plan),
            )
        return self._advance()

    def check_timeout(self, now: float | None = None) -> list[Response]:
        """Give up waiting for answers whose deadline passed; continue the push."""
        now = self._monotonic() if now is None else now
        if not self._waiting or self._deadline is None or now < self._deadline:
            return []
        log.warning(
            "%s: no ACK for %s within %.0fs; continuing the push",
            self.node_id,
            ", ".join(short_name(t) for t in self._waiting),
            self.ack_timeout,
        )
        self._waiting.clear()
        self._unclean = True
        return self._advance()

    # -- internals -----------------------------------------------------------------------------

    def _log_verdict(self, state: TypeState, verdict: Verdict) -> None:
        kind = short_name(state.type_url)
        if verdict.kind is Kind.NACK and state.last_nack is not None:
            log.warning(
                "%s: %s NACK (still running version %r): %s",
                self.node_id,
                kind,
                state.last_nack.version,
                state.last_nack.error,
            )
        elif log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s %s %s", self.node_id, kind, verdict.kind.value, sorted(verdict.added))

    def _advance(self) -> list[Response]:
        for type_url, seq in list(self._waiting.items()):
            if self.types[type_url].answered_seq >= seq:
                del self._waiting[type_url]
        out: list[Response] = []
        while not self._waiting and self._plan:
            step = self._plan.pop(0)
            if step.after_clean and (self._unclean or self._routes_rejected()):
                log.info(
                    "%s: keeping %s resources to remove until listeners and routes are accepted",
                    self.node_id,
                    "+".join(short_name(t) for t in step.type_urls),
                )
                continue
            for send in step.sends:
                response = self._send(send)
                if response is not None:
                    out.append(response)
                    self._waiting[send.type_url] = self.types[send.type_url].sent_seq
            if self._waiting:
                self._deadline = self._monotonic() + self.ack_timeout
        if not self.busy and self._push is not None:
            self.metrics.converged(max(0.0, self._monotonic() - self._push.start))
            self._push = None
        return out

    def _routes_rejected(self) -> bool:
        """Some listener or route was NACKed and not accepted since."""
        return any(
            self.types[t].rejected
            for t in (LISTENER_TYPE, ROUTE_TYPE, VIRTUAL_HOST_TYPE)
            if t in self.types
        )

    def _send(self, send: Send) -> Response | None:
        state = self.types.get(send.type_url)
        if state is None or not state.requested:
            return None
        available = self.target.get(send.type_url)
        names = state.covered(send.names) & available.keys()
        ahead: set[str] = set()
        if send.unsubscribed:
            ahead = set(send.unsubscribed & available.keys()) - state.covered(send.unsubscribed)
        removed = sorted(n for n in send.removed if n in state.have)
        if not names and not ahead and not removed:
            return None
        state.presented |= ahead
        return self._respond(state, sorted(names | ahead), removed)

    def _answer_subscription(self, state: TypeState, verdict: Verdict) -> Response | None:
        available = self.target.get(state.type_url)
        if self.delta and verdict.kind is Kind.INITIAL:
            if not state.have and isinstance(available, EntryMap):
                return self._answer_first(state, verdict, available)
            return self._answer_initial(state, verdict, available)
        if verdict.kind is Kind.INITIAL:
            candidates: Iterable[str] = [n for n in available if state.covers(n)]
        else:
            candidates = [n for n in verdict.added if n in available]
        if self.delta:
            names = sorted(n for n in candidates if state.have.get(n) != available[n].hash)
            removed = self._missing_clusters(state, verdict, available)
            if not names and not removed:
                return None
            return self._respond(state, names, removed)
        names = sorted(n for n in candidates if n not in state.have_entries)
        return self._respond(state, names, [])

    def _answer_first(self, state: TypeState, verdict: Verdict, available: EntryMap) -> Response:
        """A Delta stream's first request of a type that declares nothing (a first
        configuration): every covered name of the shared map is sent, found by set operations
        on the map's names instead of a check of each name (thousands per type per proxy);
        the same names as :meth:`_answer_initial`'s general case."""
        keys = available.keys()
        covered: set[str] | None = None  # None: every name
        if not state.wildcard:
            covered = keys & state.names
        elif state.on_demand:
            # On-demand names are covered once asked for by name (the proxy has none yet).
            covered = (keys - state.on_demand) | (keys & state.names) | (keys & state.pinned)
        if covered is not None and len(covered) == len(available):
            covered = None
        names = available.sorted_names if covered is None else sorted(covered)
        removed: list[str] = []
        if state.type_url == CLUSTER_TYPE and state.wildcard:
            # As below: a cluster asked for by name that does not exist is said to be gone.
            removed = sorted(n for n in verdict.added if n not in available)
        return self._respond(state, names, removed)

    def _answer_initial(
        self, state: TypeState, verdict: Verdict, available: Mapping[str, Entry]
    ) -> Response:
        """The first response of a type on a Delta stream: every covered resource the proxy
        does not hold as it is (a proxy resuming after a control-plane restart declared
        thousands in ``initial_resource_versions``, usually just what it is answered from),
        and, for a wildcard, what it holds that is gone.

        When the subscription covers every available name (a wildcard without on-demand
        names, or names that include them all), the comparison runs in map and list
        operations, not a Python step per name; what the proxy has afterwards is recorded as
        the (shared) map it is answered from, plus what it holds beyond it."""
        have = state.have
        covers_all = type(have) is dict and (
            (state.wildcard and not state.on_demand) or state.names.issuperset(available)
        )
        removed: list[str] = []
        if not covers_all:
            names = sorted(
                n for n in available if state.covers(n) and state.have.get(n) != available[n].hash
            )
            if state.wildcard:
                removed = sorted(n for n in state.have if n not in available)
        elif not have:
            names = sorted(available)
        else:
            held = list(map(have.get, available))
            want = list(map(_HASH, available.values()))
            names = [] if held == want else sorted(compress(available, map(ne, held, want)))
            if state.wildcard:
                removed = sorted(have.keys() - available.keys())
        missing = self._missing_clusters(state, verdict, available)
        if missing:
            removed = sorted(set(removed) | set(missing))
        response = self._respond(state, names, removed)
        if covers_all and isinstance(available, EntryMap) and type(state.have) is dict:
            # The proxy now holds every name of ``available`` as it is, and (no wildcard)
            # what it declared beyond them: a view over the shared map, not a copy.
            held_now = state.have
            extra = {n: held_now[n] for n in held_now.keys() - available.keys()}
            state.have = Have(available, extra)
        return response

    def _answer_aliases(self, state: TypeState, aliases: frozenset[str]) -> Response:
        """Answer hosts Envoy asked VHDS for: each resolved virtual host with the aliases it
        answers (Envoy releases the requests it holds for them), and for an alias nothing
        answers, the alias with no resource (the request then finds no route)."""
        available = self.target.get(state.type_url)
        by_name: dict[str, list[str]] = {}
        missing: list[str] = []
        for alias in sorted(aliases):
            name = self._aliases.get(alias)
            if name is not None and name in available:
                by_name.setdefault(name, []).append(alias)
            else:
                missing.append(alias)
        return self._respond(state, sorted(by_name), [], aliases=by_name, missing=missing)

    @staticmethod
    def _missing_clusters(
        state: TypeState, verdict: Verdict, available: Mapping[str, Entry]
    ) -> list[str]:
        """A cluster asked for by name (on-demand CDS) that does not exist: saying so lets the
        waiting request go on at once instead of after Envoy's timeout."""
        if state.type_url != CLUSTER_TYPE or not state.wildcard:
            return []
        return sorted(n for n in verdict.added if n not in available)

    def _respond(
        self,
        state: TypeState,
        names: Sequence[str],
        removed: list[str],
        *,
        aliases: Mapping[str, list[str]] | None = None,
        missing: Sequence[str] = (),
    ) -> Response:
        """Send ``names`` (sorted, each in the target) and ``removed``; Delta: ``aliases``
        gives the aliases a name is sent for, ``missing`` aliases nothing answers."""
        available = self.target.get(state.type_url)
        # The whole of a map (a first configuration): its sorted names, entries and digest are
        # computed once for every proxy that shares it, and what the proxy has is that map.
        whole = (
            available
            if isinstance(available, EntryMap)
            and len(names) == len(available)
            and not removed
            and aliases is None
            else None
        )
        sent: Sequence[Entry] = (
            whole.sorted_entries if whole is not None else [available[n] for n in names]
        )
        keep_entries = not self.delta  # SotW resends the whole set; Delta needs hashes only
        if whole is not None and self.delta and not state.have:
            # A first configuration: what the proxy has is that map (shared), not a copy.
            state.have = Have(whole)
        elif isinstance(state.have, Have) and not keep_entries:
            state.have.record(sent)
        else:
            for entry in sent:
                state.have[entry.name] = entry.hash
                if keep_entries:
                    state.have_entries[entry.name] = entry
        for name in removed:
            state.have.pop(name, None)
            state.have_entries.pop(name, None)
            state.rejected.discard(name)
        if self.delta and whole is not None:
            version = content_version([("", state.sent_version), ("*", whole.digest)])
        elif self.delta:
            # Delta versions are per resource; the system version only has to change when
            # the set does: chained from the previous one over what changed, O(changes).
            version = content_version(
                [("", state.sent_version), *((e.name, e.hash) for e in sent)]
                + [(n, "") for n in removed]
                + [(n, "?") for n in missing]
            )
        else:
            version = content_version(state.have.items())
        self._seq += 1
        nonce = f"{self.connection_id}-{self._seq}"
        if self.delta:
            recorded = whole.sorted_names if whole is not None else tuple(names)
            state.record_sent(nonce, self._seq, version, self._clock(), recorded)
            parts: Sequence[Entry | DeltaPart] = sent
            if aliases is not None or missing:
                found = aliases or {}
                parts = [DeltaPart(e, found[e.name]) if e.name in found else e for e in sent]
                parts += [DeltaPart(None, [alias]) for alias in missing]
            return DeltaResponse(
                system_version_info=version,
                type_url=state.type_url,
                nonce=nonce,
                entries=parts,
                removed_resources=removed,
                control_plane=self._control_plane,
                body=whole.delta_fields() if whole is not None else None,
            )
        view = [state.have_entries[n] for n in sorted(state.have_entries)]
        state.record_sent(nonce, self._seq, version, self._clock(), tuple(e.name for e in view))
        return discovery_pb2.DiscoveryResponse(
            version_info=version,
            type_url=state.type_url,
            nonce=nonce,
            resources=[e.any for e in view],
            control_plane=self._control_plane,
        )
