"""Per-stream, per-type xDS bookkeeping and the "should we respond?" decision (pure).

Each ADS stream keeps one :class:`TypeState` per resource type: what the proxy subscribes to,
what it has (name -> content hash, as far as the server knows), the nonces sent and the last
ACK/NACK. :func:`classify_sotw` and :func:`classify_delta` read one request against that state
and return a :class:`Verdict`, updating the subscription and ACK/NACK records:

- first request of a type (or an empty nonce): ``INITIAL``, respond;
- the latest nonce, no ``error_detail``: ``ACK`` (the acked version is recorded once);
- the latest nonce with ``error_detail``: ``NACK`` (recorded; no response, the rejected content
  stays recorded as "sent" so it is not sent again until the generated content changes);
- an older nonce: ``STALE``, ignored (SotW); Delta still applies its subscription changes and
  records a NACK of any nonce it sent, since every Delta response is answered on its own;
- the latest nonce with changed ``resource_names``: a subscription change (e.g. new EDS names
  after a CDS push), respond with the new names; it is not a second ACK.
"""

from __future__ import annotations

import enum
import sys
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

from pilotfish.xds.ordering import Subscription
from pilotfish.xds.resources import LISTENER_TYPE, WILDCARD_TYPES, Entry, short_name
from pilotfish.xds.status import NackInfo, TypeStatus

_KEEP_NONCES = 32

#: Subscribed name sets, one object per distinct set: a thousand proxies subscribing to the
#: same thousands of EDS names hold one frozenset between them (bounded; cleared when full).
_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}
_MAX_NAME_SETS = 512


def _shared(names: frozenset[str]) -> frozenset[str]:
    found = _NAME_SETS.get(names)
    if found is not None:
        return found
    if len(_NAME_SETS) >= _MAX_NAME_SETS:
        _NAME_SETS.clear()
    # Interned once per distinct set (the proxies that hold it share the strings), not per
    # name of every request: a set found above is the one kept.
    names = frozenset(map(sys.intern, names))
    _NAME_SETS[names] = names
    return names


#: (the set before, by identity; names added; names removed) -> (that set, the set after): a
#: thousand proxies that hold one shared set and make the same change (the EDS subscription
#: of a new cluster) build the new set once, each paying O(change), not O(names).
_NAME_UPDATES: dict[
    tuple[int, frozenset[str], frozenset[str]], tuple[frozenset[str], frozenset[str]]
] = {}


def _updated(
    before: frozenset[str], subscribe: set[str], unsubscribe: set[str]
) -> tuple[frozenset[str], frozenset[str]]:
    """``(before | subscribe) - unsubscribe`` (shared), and the names it adds to ``before``."""
    # Set operations, not a check per name: a first EDS request names thousands.
    if not before:
        first = _shared(frozenset(subscribe.difference(unsubscribe)))
        return first, first
    added = frozenset(subscribe).difference(before, unsubscribe)
    removed = before.intersection(unsubscribe)
    if not added and not removed:
        return before, added
    key = (id(before), added, removed)
    found = _NAME_UPDATES.get(key)
    if found is not None and found[0] is before:
        return found[1], added
    after = _shared((before | added) - removed)
    if len(_NAME_UPDATES) >= _MAX_NAME_SETS:
        _NAME_UPDATES.clear()
    _NAME_UPDATES[key] = (before, after)
    return after, added


class Have(MutableMapping[str, str]):
    """name -> content hash a proxy has, as the entries of a map it was sent whole (shared
    with every proxy sent the same map: a first configuration) and what changed since (its
    own). A thousand proxies with thousands of clusters each do not keep a thousand copies
    of the same names and hashes."""

    __slots__ = ("_base", "_changed", "_len")

    def __init__(self, base: Mapping[str, Entry], extra: Mapping[str, str] | None = None) -> None:
        """``base``'s names and hashes, and ``extra`` (names ``base`` does not have)."""
        self._base = base
        #: name -> hash set since, or None: removed since.
        self._changed: dict[str, str | None] = (
            {sys.intern(n): sys.intern(h) for n, h in extra.items()} if extra else {}
        )
        self._len = len(base) + len(self._changed)

    @property
    def base(self) -> Mapping[str, Entry]:
        """The map this one was sent whole (or declared holding)."""
        return self._base

    def names_not_in(self, names: frozenset[str]) -> list[str]:
        """The names held that are not in ``names`` (set operations on the shared map)."""
        base, changed = self._base, self._changed
        out = [n for n in base.keys() - names if changed.get(n, "") is not None]
        out += [n for n, h in changed.items() if h is not None and n not in names and n not in base]
        return out

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        if name in self._changed:
            found = self._changed[name]
            return default if found is None else found
        entry = self._base.get(name)
        return default if entry is None else entry.hash

    def pick(self, names: Collection[str]) -> dict[str, str]:
        """name -> hash of those of ``names`` the proxy has, in one pass (a push compares
        hundreds of names per proxy: no method call per name)."""
        base, changed = self._base, self._changed
        out = {n: e.hash for n in names if n not in changed and (e := base.get(n)) is not None}
        if changed:
            for n in names:
                if n in changed and (h := changed[n]) is not None:
                    out[n] = h
        return out

    def record(self, entries: Iterable[Entry]) -> None:
        """Each entry's name -> its hash (what was just sent), without a call per entry."""
        base, changed = self._base, self._changed
        added = 0
        for e in entries:
            name = e.name
            if name in changed:
                if changed[name] is None:
                    added += 1
            elif name not in base:
                added += 1
            changed[name] = e.hash
        self._len += added

    def __getitem__(self, name: str) -> str:
        found = self.get(name)
        if found is None:
            raise KeyError(name)
        return found

    def __contains__(self, name: object) -> bool:
        if name in self._changed:
            return self._changed[name] is not None
        return name in self._base

    def __setitem__(self, name: str, content_hash: str) -> None:
        if name not in self:
            self._len += 1
        self._changed[name] = content_hash

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        if name in self._base:
            self._changed[name] = None
        else:
            del self._changed[name]
        self._len -= 1

    def __iter__(self) -> Iterator[str]:
        changed = self._changed
        for name in self._base:
            if name not in changed or changed[name] is not None:
                yield name
        for name, content_hash in changed.items():
            if content_hash is not None and name not in self._base:
                yield name

    def __len__(self) -> int:
        return self._len


class Kind(enum.Enum):
    INITIAL = "initial"
    ACK = "ack"
    NACK = "nack"
    STALE = "stale"
    SUBSCRIBE = "subscription change"


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    #: Send a response for these names (INITIAL: every covered name; SUBSCRIBE: the new ones).
    respond: bool
    #: Names newly subscribed by this request.
    added: frozenset[str] = frozenset()
    #: Sequence number of the response this request answers (ACK/NACK), else 0.
    answered_seq: int = 0


@dataclass
class TypeState:
    """What one stream knows about one type."""

    type_url: str
    requested: bool = False
    wildcard: bool = False
    names: frozenset[str] = frozenset()
    #: name -> content hash the proxy has (as far as we know: sent, or declared on reconnect);
    #: a :class:`Have` over the map of a first configuration sent whole.
    have: MutableMapping[str, str] = field(default_factory=dict)
    #: name -> entry sent (SotW needs the content to resend the whole set).
    have_entries: dict[str, Entry] = field(default_factory=dict)
    sent_version: str = ""
    sent_nonce: str = ""
    sent_seq: int = 0
    sent_at: float | None = None
    acked_version: str = ""
    acked_nonce: str = ""
    acked_at: float | None = None
    #: Highest sequence number ACKed or NACKed.
    answered_seq: int = 0
    last_nack: NackInfo | None = None
    #: Recent nonces sent -> (sequence number, version, names in that response).
    nonces: OrderedDict[str, tuple[int, str, tuple[str, ...]]] = field(default_factory=OrderedDict)
    #: Names sent in a NACKed response and not accepted since: the proxy may still run an
    #: older version of them (or none), so what they referred to must stay.
    rejected: set[str] = field(default_factory=set)
    #: Names sent before the proxy subscribed to them (Delta: load assignments of new
    #: clusters sent with the clusters); no longer listed once it subscribes.
    presented: set[str] = field(default_factory=set)
    #: Names a wildcard subscription leaves out until asked for by name (Delta, on-demand
    #: CDS; set by the connection from its snapshot).
    on_demand: frozenset[str] = frozenset()
    #: Names covered as if subscribed: what the hosts a proxy asked VHDS for resolve to
    #: (on-demand virtual hosts; set by the connection).
    pinned: frozenset[str] = frozenset()

    @property
    def subscription(self) -> Subscription:
        names = self.names | self.pinned if self.pinned else self.names
        return Subscription(self.wildcard, names, self.on_demand)

    def covers(self, name: str) -> bool:
        """Subscribed by name (or pinned), or by the wildcard; an on-demand name the proxy
        already has stays covered (it is kept up to date)."""
        if name in self.names or name in self.pinned:
            return True
        return self.wildcard and (name not in self.on_demand or name in self.have)

    def covered(self, names: frozenset[str] | set[str]) -> frozenset[str] | set[str]:
        """Those of ``names`` it :meth:`covers` (set operations but for on-demand names)."""
        if not self.wildcard:
            return names & (self.names | self.pinned)
        if not self.on_demand:
            return set(names)
        return {n for n in names if self.covers(n)}

    def record_sent(
        self, nonce: str, seq: int, version: str, now: float, names: tuple[str, ...] = ()
    ) -> None:
        self.sent_nonce, self.sent_seq, self.sent_version, self.sent_at = nonce, seq, version, now
        self.nonces[nonce] = (seq, version, names)
        while len(self.nonces) > _KEEP_NONCES:
            self.nonces.popitem(last=False)

    def forget_uncovered(self) -> None:
        """Drop what the proxy had under names it no longer subscribes to."""
        have = self.have
        uncovered: Iterable[str]
        if self.wildcard or not have:
            # Every name held is covered by the wildcard (an on-demand one too: it is held).
            uncovered = ()
        elif isinstance(have, Have):
            uncovered = have.names_not_in(self.names | self.pinned)
        else:
            uncovered = list(have.keys() - self.names - self.pinned)
        for name in uncovered:
            self.have.pop(name, None)
            self.have_entries.pop(name, None)
            self.rejected.discard(name)
        self.presented.clear()

    def forget_presented(self) -> None:
        """Drop what was sent ahead of a subscription that will not come (the clusters that
        needed it were rejected): if the proxy subscribes later, it is sent again."""
        for name in self.presented:
            if not self.covers(name):
                self.have.pop(name, None)
        self.presented.clear()

    def status(self) -> TypeStatus:
        return TypeStatus(
            type_url=self.type_url,
            short_name=short_name(self.type_url),
            sent_version=self.sent_version,
            sent_nonce=self.sent_nonce,
            sent_at=self.sent_at,
            acked_version=self.acked_version,
            acked_nonce=self.acked_nonce,
            acked_at=self.acked_at,
            last_nack=self.last_nack,
            subscribed=tuple(sorted(self.names)),
            wildcard=self.wildcard,
            resource_count=len(self.have),
        )


def _record_answer(
    state: TypeState, nonce: str, version: str, error: str, code: int, now: float
) -> Kind:
    seq, _, names = state.nonces.get(nonce, (0, "", ()))
    state.answered_seq = max(state.answered_seq, seq)
    if error:
        state.last_nack = NackInfo(nonce=nonce, version=version, error=error, code=code, at=now)
        state.rejected.update(names)
        return Kind.NACK
    state.rejected.difference_update(names)
    if state.acked_nonce != nonce:
        state.acked_nonce, state.acked_version, state.acked_at = nonce, version, now
    return Kind.ACK


def classify_sotw(state: TypeState, request: discovery_pb2.DiscoveryRequest, now: float) -> Verdict:
    """Decide what a State-of-the-World request means; updates ``state``."""
    names = set(request.resource_names)
    wildcard = "*" in names or (not names and state.type_url in WILDCARD_TYPES)
    names.discard("*")
    old_names, old_wildcard = set(state.names), state.wildcard
    first = not state.requested or not request.response_nonce or not state.sent_nonce

    def subscribe() -> frozenset[str]:
        state.requested, state.wildcard, state.names = True, wildcard, frozenset(names)
        state.forget_uncovered()
        return frozenset(names - old_names)

    if first:
        added = subscribe()
        return Verdict(Kind.INITIAL, respond=True, added=added)
    if request.response_nonce != state.sent_nonce:
        return Verdict(Kind.STALE, respond=False)
    seq = state.sent_seq
    already = state.answered_seq >= seq
    error = request.error_detail.message if request.HasField("error_detail") else ""
    code = request.error_detail.code if request.HasField("error_detail") else 0
    kind = _record_answer(state, request.response_nonce, request.version_info, error, code, now)
    changed = names != old_names or wildcard != old_wildcard
    added = subscribe()
    if kind is Kind.NACK:
        return Verdict(Kind.NACK, respond=False, answered_seq=0 if already else seq)
    if changed:
        respond = bool(added) or (wildcard and not old_wildcard)
        answered = 0 if already else seq
        return Verdict(Kind.SUBSCRIBE, respond=respond, added=added, answered_seq=answered)
    return Verdict(Kind.ACK, respond=False, answered_seq=0 if already else seq)


def classify_delta(
    state: TypeState, request: discovery_pb2.DeltaDiscoveryRequest, now: float
) -> Verdict:
    """Decide what a Delta request means; updates ``state`` (subscriptions, ACK/NACK)."""
    # The names a thousand proxies subscribe to are one shared set of interned strings
    # (``_shared``): those of the request are only read.
    subscribe = set(request.resource_names_subscribe)
    unsubscribe = set(request.resource_names_unsubscribe)
    first = not state.requested
    was_wildcard = state.wildcard
    if first:
        state.requested = True
        state.wildcard = state.type_url in WILDCARD_TYPES and not subscribe
        declared = request.initial_resource_versions
        if declared:
            # What a resumed proxy holds, until its first response: the connection then
            # compares it with the map it answers from and records that (shared) map.
            if state.have:
                state.have.update(declared)
            else:
                state.have = dict(declared)
    if "*" in subscribe:
        state.wildcard = True
    if "*" in unsubscribe:
        state.wildcard = False
    subscribe.discard("*")
    unsubscribe.discard("*")
    added: frozenset[str] = frozenset()
    if subscribe or unsubscribe:
        # An ACK changes no subscription: O(1), not O(names) (EDS has one per cluster); a
        # change costs O(change) for every proxy but the first to make it.
        state.names, added = _updated(state.names, subscribe, unsubscribe)
        if state.presented:
            state.presented -= added
    if first or unsubscribe or (was_wildcard and not state.wildcard):
        state.forget_uncovered()

    answered = 0
    kind = Kind.INITIAL if first else Kind.SUBSCRIBE
    nonce = request.response_nonce
    if nonce:
        known = state.nonces.get(nonce)
        error = request.error_detail.message if request.HasField("error_detail") else ""
        if known is None or (known[0] < state.sent_seq and not error):
            kind = Kind.STALE
        else:
            seq, version, _ = known
            code = request.error_detail.code if request.HasField("error_detail") else 0
            already = state.answered_seq >= seq
            # A Delta NACK carries no version: the proxy still runs the last ACKed one.
            reported = state.acked_version if error else version
            kind = _record_answer(state, nonce, reported, error, code, now)
            answered = 0 if already else seq
    respond = first or bool(added)
    if respond and kind in (Kind.ACK, Kind.STALE):
        kind = Kind.SUBSCRIBE
    return Verdict(kind, respond=respond, added=added, answered_seq=answered)


def resumes_listeners(
    request: discovery_pb2.DiscoveryRequest | discovery_pb2.DeltaDiscoveryRequest,
) -> bool:
    """The proxy already runs listeners it got on an earlier stream (it reconnects, e.g. after
    a control-plane restart): its first listener request on this stream declares what it
    holds (Delta ``initial_resource_versions``; SotW a ``version_info`` without a nonce, the
    version it last accepted). Such a proxy listens before any response on this stream; a
    proxy connecting for the first time listens only once it has applied its first
    listeners."""
    if request.type_url != LISTENER_TYPE:
        return False
    if isinstance(request, discovery_pb2.DeltaDiscoveryRequest):
        return not request.response_nonce and bool(request.initial_resource_versions)
    return not request.response_nonce and bool(request.version_info)
