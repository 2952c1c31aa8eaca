"""Resources as the xDS server holds them: type URLs, the generator contract, the shared cache.

The rest of the control plane hands the xDS server a :data:`Generator`: a pure function from a
proxy's :class:`~pilotfish.api.node.NodeInfo` to :data:`Resources`, a mapping
``type URL -> {resource name -> protobuf message}`` for CDS, EDS, LDS, RDS, SDS and ECDS.

The server turns each generated mapping into a :class:`Snapshot` of :class:`Entry` objects. An
entry carries the resource serialized once (``google.protobuf.Any``) and a content hash, which
is the resource's version: two proxies that get byte-identical resources share one entry
through the :class:`ResourceCache`, and a proxy is sent a resource only when its hash differs
from the one it already has.

Contract for generators: return fresh messages or messages that are never mutated afterwards
(the cache may reuse the serialization of a message object it has seen recently).
"""

from __future__ import annotations

import hashlib
import sys
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from pilotfish.api.layered import Layered
from pilotfish.api.node import NodeInfo
from pilotfish.api.typeurls import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    EXTENSION_CONFIG_TYPE,
    LISTENER_TYPE,
    PREFIX,
    ROUTE_TYPE,
    SECRET_TYPE,
    VIRTUAL_HOST_TYPE,
)
from pilotfish.api.vhost_directory import HostDirectory

#: Every type the server serves, in the order a push sends them.
PUSH_ORDER: tuple[str, ...] = (
    SECRET_TYPE,
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    VIRTUAL_HOST_TYPE,
    EXTENSION_CONFIG_TYPE,
)
#: Types Envoy subscribes to as a whole (no resource names): the server sends the full set.
#: Envoy's VHDS subscribes to virtual hosts this way too (an empty first request), and takes
#: those named ``<route config>/...`` of each route config that has ``vhds``.
WILDCARD_TYPES = frozenset({CLUSTER_TYPE, LISTENER_TYPE, VIRTUAL_HOST_TYPE})

SHORT_NAMES: Mapping[str, str] = {
    CLUSTER_TYPE: "CDS",
    ENDPOINT_TYPE: "EDS",
    LISTENER_TYPE: "LDS",
    ROUTE_TYPE: "RDS",
    VIRTUAL_HOST_TYPE: "VHDS",
    SECRET_TYPE: "SDS",
    EXTENSION_CONFIG_TYPE: "ECDS",
}

#: type URL -> {resource name -> message}
Resources = Mapping[str, Mapping[str, Message]]


class Generated(dict[str, dict[str, Message]]):
    """Resources, and per type the names a proxy gets only by asking for them by name
    (on-demand CDS: left out of a Delta proxy's wildcard set until it subscribes to one;
    on-demand VHDS: asked for by a host, which ``directory`` resolves). A generator may
    return this instead of a plain mapping."""

    def __init__(
        self,
        resources: Mapping[str, dict[str, Message]],
        on_demand: Mapping[str, frozenset[str]] | None = None,
        directory: HostDirectory | None = None,
    ) -> None:
        super().__init__(resources)
        self.on_demand: Mapping[str, frozenset[str]] = dict(on_demand or {})
        self.directory = directory


def on_demand_of(resources: Resources) -> Mapping[str, frozenset[str]]:
    """The on-demand names of generated resources (none for a plain mapping)."""
    return resources.on_demand if isinstance(resources, Generated) else {}


def directory_of(resources: Resources) -> HostDirectory | None:
    """How hosts resolve to on-demand virtual hosts (None: none are on demand)."""
    return resources.directory if isinstance(resources, Generated) else None


#: Pure function from a proxy to its resources. May be slow-ish; it runs off the event loop.
Generator = Callable[[NodeInfo], Resources]


def short_name(type_url: str) -> str:
    """``CDS`` for the Cluster type URL, the last dotted component for unknown types."""
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


#: Wire tag of ``DeltaDiscoveryResponse.resources`` (field 2, length-delimited).
_RESOURCES_TAG = b"\x12"


class Entry:
    """One resource serialized once: name, content hash (its version) and the packed Any."""

    __slots__ = ("__weakref__", "_field", "any", "eds_service", "hash", "name", "type_url")

    def __init__(
        self, type_url: str, name: str, payload: bytes, eds_service: str | None = None
    ) -> None:
        self.type_url = type_url
        self.name = name
        self.hash = hashlib.sha256(payload).hexdigest()[:16]
        self.any = any_pb2.Any(type_url=type_url, value=payload)
        #: Clusters: the ClusterLoadAssignment an EDS cluster needs (None otherwise).
        self.eds_service = eds_service
        self._field: bytes | None = None

    @property
    def resource(self) -> discovery_pb2.Resource:
        """The Delta ``Resource`` (name, version, Any) as a message (a copy; for readers)."""
        return discovery_pb2.Resource(name=self.name, version=self.hash, resource=self.any)

    @property
    def delta_field(self) -> bytes:
        """This resource encoded as one ``resources`` field of a ``DeltaDiscoveryResponse``,
        built once and shared by every response that carries it: a response is its small
        header plus these bytes, never a message holding a copy of the resource (building
        one copies the whole resource; a route configuration of 1,000 services is ~0.8 MB)."""
        if self._field is None:
            body = discovery_pb2.Resource(
                name=self.name, version=self.hash, resource=self.any
            ).SerializeToString(deterministic=True)
            self._field = _RESOURCES_TAG + _varint(len(body)) + body
        return self._field

    def __repr__(self) -> str:
        return f"Entry({short_name(self.type_url)} {self.name} {self.hash})"


class DeltaPart:
    """One Delta ``Resource`` built for one response, not shared: an entry carrying the
    ``aliases`` an on-demand VHDS request named (the hosts it resolves), or, with no entry,
    the VHDS protocol's "no such virtual host" (the alias as name and alias, no resource)."""

    __slots__ = ("delta_field", "hash", "name", "resource")

    def __init__(self, entry: Entry | None, aliases: Sequence[str]) -> None:
        if entry is None:
            resource = discovery_pb2.Resource(name=aliases[0], aliases=aliases)
        else:
            resource = discovery_pb2.Resource(
                name=entry.name, version=entry.hash, resource=entry.any, aliases=aliases
            )
        self.name = resource.name
        self.hash = resource.version
        self.resource = resource
        body = resource.SerializeToString(deterministic=True)
        self.delta_field = _RESOURCES_TAG + _varint(len(body)) + body


#: The joined Delta fields of the last few maps sent whole (``EntryMap.delta_fields``).
_JOINED: OrderedDict[int, tuple[weakref.ref[EntryMap], bytes]] = OrderedDict()
_JOINED_MAX = 8
_JOINED_LOCK = threading.Lock()


class EntryMap(dict[str, Entry]):
    """The entries of one type for a proxy. Proxies whose entries are the same share one map
    (built by :class:`ResourceCache`); never modified once built."""

    __slots__ = ("__weakref__", "_digest", "_eds_of", "_entries", "_names", "base")

    def __init__(self, entries: Mapping[str, Entry]) -> None:
        super().__init__(entries)
        #: The map this one was updated from (a weak reference), for the update memo.
        self.base: weakref.ref[Mapping[str, Entry]] | None = None
        self._eds_of: dict[str, str] | None = None
        self._names: tuple[str, ...] | None = None
        self._entries: tuple[Entry, ...] | None = None
        self._digest: str | None = None

    @property
    def sorted_names(self) -> tuple[str, ...]:
        """Every name, sorted (shared by every response that sends the whole map)."""
        if self._names is None:
            self._names = tuple(sorted(self))
        return self._names

    @property
    def sorted_entries(self) -> tuple[Entry, ...]:
        """Every entry, in the order of :attr:`sorted_names` (shared like it)."""
        if self._entries is None:
            self._entries = tuple(self[n] for n in self.sorted_names)
        return self._entries

    def delta_fields(self) -> bytes:
        """Every entry as a Delta response's ``resources`` field, in :attr:`sorted_names`
        order, joined: built once for the proxies sent the whole map in a short while (first
        configurations), and kept for the last few maps only (thousands of clusters are
        ~1.5 MB, and a proxy holds on to the map of its first configuration)."""
        with _JOINED_LOCK:
            found = _JOINED.get(id(self))
            if found is not None and found[0]() is self:
                _JOINED.move_to_end(id(self))
                return found[1]
        joined = b"".join([e.delta_field for e in self.sorted_entries])
        with _JOINED_LOCK:
            _JOINED[id(self)] = (weakref.ref(self), joined)
            while len(_JOINED) > _JOINED_MAX:
                _JOINED.popitem(last=False)
        return joined

    @property
    def digest(self) -> str:
        """A short hash of every (name, content hash) pair, computed once."""
        if self._digest is None:
            h = hashlib.sha256()
            for name in self.sorted_names:
                h.update(f"{name}={self[name].hash}\n".encode())
            self._digest = h.hexdigest()[:16]
        return self._digest

    @property
    def eds_of(self) -> dict[str, str]:
        """Clusters only: cluster name -> ClusterLoadAssignment name of its EDS clusters."""
        if self._eds_of is None:
            self._eds_of = _eds_of(self)
        return self._eds_of


#: Bases of layered maps kept interned (a view's clusters and load assignments, of the few
#: push contexts a storm's generations interleave).
_BASES_MAX = 16
#: Layered maps remembered by their base and own entries.
_LAYERS_MAX = 1024


class ResourceCache:
    """Interns entries by ``(type, name, content hash)`` so proxies share serialized bytes.

    Entries live as long as some proxy's snapshot refers to them (weak values). A bounded memo
    keyed by message identity skips re-serializing a message object the generator returns to
    many proxies.

    The memo and the interned bases of layered maps hold the generator's messages (to keep
    their identity), so they keep what they hold for one push only (:meth:`next_push`): what
    no generation used since the push before is let go. Without it a superseded message
    stayed until thousands of newer ones pushed it out, which a quiet mesh may never intern:
    at a thousand services each weight flip over whole route configurations left its ~3 MB
    route configuration (the message, its serialization and encoding) behind.
    """

    def __init__(self, memo_size: int = 4096) -> None:
        self._entries: weakref.WeakValueDictionary[tuple[str, str, str], Entry] = (
            weakref.WeakValueDictionary()
        )
        self._memo: OrderedDict[int, tuple[Message, Entry]] = OrderedDict()
        #: The memo of the push before (``next_push``): a hit moves back into ``_memo``.
        self._memo_before: dict[int, tuple[Message, Entry]] = {}
        self._memo_size = memo_size
        #: The most resources of each type one generation interned.
        self._type_sizes: dict[str, int] = {}
        self._lock = threading.Lock()
        self._maps: weakref.WeakValueDictionary[Hashable, EntryMap] = weakref.WeakValueDictionary()
        self._updates: weakref.WeakValueDictionary[Hashable, EntryMap] = (
            weakref.WeakValueDictionary()
        )
        self._name_sets: OrderedDict[frozenset[str], frozenset[str]] = OrderedDict()
        #: id of a layered map's base -> (that base, its entries): interned once per base.
        self._bases: OrderedDict[int, tuple[Mapping[str, Message], EntryMap]] = OrderedDict()
        #: The bases of the push before, like ``_memo_before``.
        self._bases_before: dict[int, tuple[Mapping[str, Message], EntryMap]] = {}
        #: (type, base entries by identity, touched names and their entries) -> (the base
        #: entries, the shared map), both weakly: the proxies of a view with the same own
        #: resources get the same map in O(own resources).
        self._layers: OrderedDict[Hashable, tuple[weakref.ref[Any], weakref.ref[EntryMap]]] = (
            OrderedDict()
        )

    def next_push(self) -> None:
        """A push begins: the memo entries and bases no generation used since the push
        before this one are let go (with the messages, of older push contexts, they hold)."""
        with self._lock:
            self._memo_before, self._memo = self._memo, OrderedDict()
            self._bases_before, self._bases = self._bases, OrderedDict()

    def share(self, type_url: str, entries: Mapping[str, Entry]) -> EntryMap:
        """The one map holding exactly ``entries`` (proxies of one view share it)."""
        # Entries are interned (one object per type, name and content while in use), so the
        # entry objects identify the map; cheaper than (name, hash) pairs.
        key = (type_url, frozenset(entries.values()))
        with self._lock:
            found = self._maps.get(key)
            if found is None:
                found = self._maps[key] = EntryMap(entries)
            return found

    def whole(self, type_url: str, by_name: Mapping[str, Message]) -> EntryMap:
        """The shared map of every resource of ``by_name`` (``share`` of ``intern_all``). For
        a :class:`~pilotfish.api.layered.Layered` map (a copy of a view's map plus the
        proxy's own resources) the base is interned once, and each proxy pays for the names
        it touched only: a first configuration of a thousand services is thousands of names
        per type, nearly all the view's."""
        base = by_name.base if isinstance(by_name, Layered) else None
        if base is None:
            return self.share(type_url, self.intern_all(type_url, by_name))
        assert isinstance(by_name, Layered)
        touched: set[str] = by_name.touched
        base_entries = self._base_entries(type_url, base)
        fresh = self.intern_all(type_url, {n: by_name[n] for n in touched if n in by_name})
        key = (type_url, id(base_entries), frozenset((n, fresh.get(n)) for n in touched))
        with self._lock:
            found = self._layers.get(key)
            if found is not None and found[0]() is base_entries:
                shared = found[1]()
                if shared is not None:
                    self._layers.move_to_end(key)
                    return shared
        merged = dict(base_entries)
        for n in touched:
            merged.pop(n, None)
        merged.update(fresh)
        shared = self.share(type_url, merged)
        with self._lock:
            self._layers[key] = (weakref.ref(base_entries), weakref.ref(shared))
            while len(self._layers) > _LAYERS_MAX:
                self._layers.popitem(last=False)
        return shared

    def _base_entries(self, type_url: str, base: Mapping[str, Message]) -> EntryMap:
        with self._lock:
            found = self._bases.get(id(base))
            if found is not None and found[0] is base:
                self._bases.move_to_end(id(base))
                return found[1]
            found = self._bases_before.pop(id(base), None)
            if found is not None and found[0] is base:
                self._bases[id(base)] = found
                return found[1]
        entries = EntryMap(self.intern_all(type_url, base))
        with self._lock:
            self._bases[id(base)] = (base, entries)
            while len(self._bases) > _BASES_MAX:
                self._bases.popitem(last=False)
        return entries

    def updated(
        self,
        type_url: str,
        previous: Mapping[str, Entry],
        names: frozenset[str],
        fresh: Mapping[str, Entry],
    ) -> Mapping[str, Entry]:
        """``previous`` with ``names`` replaced by ``fresh`` (a name not in ``fresh`` is
        dropped): ``previous`` itself when nothing differs; built once for every proxy that
        had ``previous`` and gets the same change."""
        if all(previous.get(n) is fresh.get(n) for n in names):
            return previous
        change = (
            type_url,
            id(previous),
            frozenset((n, e.hash if (e := fresh.get(n)) is not None else None) for n in names),
        )
        with self._lock:
            found = self._updates.get(change)
            if found is not None and found.base is not None and found.base() is previous:
                return found
        merged = dict(previous)
        for n in names:
            merged.pop(n, None)
        merged.update(fresh)
        out = EntryMap(merged)
        if isinstance(previous, EntryMap):
            out.base = weakref.ref(previous)
            with self._lock:
                self._updates[change] = out
        return out

    def names(self, names: frozenset[str]) -> frozenset[str]:
        """One shared set for equal sets of names (the on-demand names of proxies of one view)."""
        with self._lock:
            found = self._name_sets.get(names)
            if found is None:
                found = self._name_sets[names] = names
                while len(self._name_sets) > self._memo_size:
                    self._name_sets.popitem(last=False)
            else:
                self._name_sets.move_to_end(names)
            return found

    @property
    def size(self) -> int:
        """Entries alive (referenced by some proxy's snapshot)."""
        return len(self._entries)

    def describe(self) -> list[str]:
        """What the cache holds, for a memory report (``pilotfish.memreport``)."""
        mb = 2**20
        with self._lock:
            only_memo = self._kept_by_memo_alone()
            entries = list(self._entries.values())
            lines = [
                f"memo {len(self._memo)} of {self._memo_size} (and {len(self._memo_before)} "
                f"of the push before), bases {len(self._bases)} (and {len(self._bases_before)}), "
                f"layers {len(self._layers)}, maps {len(self._maps)}, updates "
                f"{len(self._updates)}, name sets {len(self._name_sets)}",
            ]
        payload = sum(len(e.any.value) for e in entries) / mb
        fields = sum(len(e._field) for e in entries if e._field is not None) / mb
        lines.append(f"entries {len(entries)}: {payload:.1f} MB packed, {fields:.1f} MB encoded")
        by_type: dict[str, list[int]] = {}
        for e in entries:
            count = by_type.setdefault(short_name(e.type_url), [0, 0])
            count[0] += 1
            count[1] += len(e.any.value)
        lines.append(
            "  by type: "
            + ", ".join(f"{t} {n} ({size / mb:.1f} MB)" for t, (n, size) in sorted(by_type.items()))
        )
        lines.append(
            f"entries kept by the memo alone: {len(only_memo)} "
            f"({sum(len(e.any.value) for e in only_memo) / mb:.1f} MB packed)"
        )
        with _JOINED_LOCK:
            joined = [b for _, b in _JOINED.values()]
        lines.append(f"joined maps {len(joined)}: {sum(map(len, joined)) / mb:.1f} MB")
        return lines

    def _kept_by_memo_alone(self) -> list[Entry]:
        """The entries no snapshot, map or response refers to, only the memo (under the
        lock)."""
        pairs = [*self._memo.values(), *self._memo_before.values()]
        memo = {id(pair[1]): pair[1] for pair in pairs}
        refs = Counter(id(pair[1]) for pair in pairs)
        del pairs
        # Referred to by the memo's tuples, ``memo`` and getrefcount's argument only.
        return [memo[i] for i in list(memo) if sys.getrefcount(memo[i]) == refs[i] + 2]

    def intern(self, type_url: str, name: str, message: Message) -> Entry:
        """The shared entry for this resource (thread-safe: generators run in threads)."""
        with self._lock:
            return self._intern(type_url, name, message)

    def intern_all(self, type_url: str, by_name: Mapping[str, Message]) -> dict[str, Entry]:
        """``intern`` for every resource of one type, under one lock acquisition."""
        with self._lock:
            # Room for every type of a few proxies' configurations built from different
            # contexts (a storm interleaves them): a memo smaller than what one generation
            # interns is emptied in order by each one and serializes everything again.
            self._type_sizes[type_url] = max(self._type_sizes.get(type_url, 0), len(by_name))
            self._memo_size = max(self._memo_size, 3 * sum(self._type_sizes.values()))
            # The memo hit inline (a first configuration interns thousands of shared messages).
            memo, out = self._memo, {}
            for name, m in by_name.items():
                hit = memo.get(id(m))
                if hit is not None and hit[0] is m and hit[1].name == name:
                    memo.move_to_end(id(m))
                    out[name] = hit[1]
                else:
                    out[name] = self._intern(type_url, name, m)
            return out

    def _intern(self, type_url: str, name: str, message: Message) -> Entry:
        memo = self._memo.get(id(message))
        if memo is not None and memo[0] is message and memo[1].name == name:
            self._memo.move_to_end(id(message))
            return memo[1]
        memo = self._memo_before.pop(id(message), None)
        if memo is not None and memo[0] is message and memo[1].name == name:
            self._remember(message, memo[1])
            return memo[1]
        expected = type_url.removeprefix(PREFIX)
        if message.DESCRIPTOR.full_name != expected:
            raise ValueError(
                f"resource {name!r} under {type_url} is a {message.DESCRIPTOR.full_name}"
            )
        eds = None
        if type_url == CLUSTER_TYPE:
            assert isinstance(message, cluster_pb2.Cluster)
            eds = _eds_service_name(message)
        fresh = Entry(type_url, name, message.SerializeToString(deterministic=True), eds)
        key = (type_url, name, fresh.hash)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = entry = fresh
        self._remember(message, entry)
        return entry

    def _remember(self, message: Message, entry: Entry) -> None:
        self._memo[id(message)] = (message, entry)
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)


@dataclass(frozen=True)
class Snapshot:
    """What one proxy should have: entries per type, plus EDS service names of EDS clusters."""

    entries: Mapping[str, Mapping[str, Entry]]
    #: cluster name -> the ClusterLoadAssignment name it needs (EDS clusters only).
    eds_of_cluster: Mapping[str, str] = field(default_factory=dict)
    #: type URL -> names a Delta proxy gets only once it asks for them by name.
    on_demand: Mapping[str, frozenset[str]] = field(default_factory=dict)
    #: Resolves the hosts a proxy asks VHDS for to virtual hosts (on-demand virtual hosts).
    directory: HostDirectory | None = None

    def get(self, type_url: str) -> Mapping[str, Entry]:
        return self.entries.get(type_url, {})

    def hashes(self, type_url: str) -> dict[str, str]:
        return {name: e.hash for name, e in self.get(type_url).items()}


EMPTY_SNAPSHOT = Snapshot(entries={})


def build_snapshot(resources: Resources, cache: ResourceCache) -> Snapshot:
    """Serialize (or reuse) every generated resource. Raises ValueError on a wrong message type."""
    entries: dict[str, EntryMap] = {}
    for type_url, by_name in resources.items():
        # Messages the generator shares across proxies are serialized (and type-checked)
        # once; for the others this is one dictionary lookup per resource. Proxies that get
        # the same entries share one map.
        entries[type_url] = cache.whole(type_url, by_name)
    on_demand = {t: cache.names(n) for t, n in on_demand_of(resources).items() if n}
    return _snapshot(entries, on_demand, directory_of(resources))


def _snapshot(
    entries: Mapping[str, Mapping[str, Entry]],
    on_demand: Mapping[str, frozenset[str]] | None = None,
    directory: HostDirectory | None = None,
) -> Snapshot:
    clusters = entries.get(CLUSTER_TYPE)
    eds_of = clusters.eds_of if isinstance(clusters, EntryMap) else _eds_of(clusters or {})
    return Snapshot(
        entries=entries, eds_of_cluster=eds_of, on_demand=on_demand or {}, directory=directory
    )


def _eds_of(entries: Mapping[str, Entry]) -> dict[str, str]:
    return {n: e.eds_service for n, e in entries.items() if e.eds_service is not None}


def update_snapshot(
    previous: Snapshot,
    resources: Resources,
    scope: Mapping[str, frozenset[str] | None],
    cache: ResourceCache,
) -> Snapshot:
    """``previous`` with the resources in ``scope`` replaced by the generated ones.

    For a type whose names are ``None`` every resource is taken from ``resources``; for a
    type with names, only those names are interned and replaced (a name missing from
    ``resources`` is dropped), so the cost follows the size of the scope, not of the config.
    Types outside ``scope`` keep ``previous``'s entries. Proxies that had the same map and get
    the same changes share the new map (it is built once).
    """
    entries: dict[str, Mapping[str, Entry]] = dict(previous.entries)
    # Clusters first: the load assignments of the clusters in scope are in scope too.
    types = set(scope) | ({ENDPOINT_TYPE} if CLUSTER_TYPE in scope else set())
    for type_url in sorted(types, key=lambda t: (t != CLUSTER_TYPE, t)):
        names = scope.get(type_url, frozenset())
        if type_url == ENDPOINT_TYPE and names is not None and CLUSTER_TYPE in scope:
            clusters = scope[CLUSTER_TYPE]
            eds_of = _snapshot(entries).eds_of_cluster
            names = (
                None if clusters is None else names | {eds_of[c] for c in clusters if c in eds_of}
            )
        by_name = resources.get(type_url, {})
        if names is None:
            entries[type_url] = cache.whole(type_url, by_name)
            continue
        fresh = cache.intern_all(type_url, {n: by_name[n] for n in names if n in by_name})
        entries[type_url] = cache.updated(type_url, previous.get(type_url), names, fresh)
    # The generator returns the on-demand names of every type it generated, whole.
    on_demand = dict(previous.on_demand)
    generated = on_demand_of(resources)
    for type_url in types:
        names_of = generated.get(type_url)
        if names_of:
            on_demand[type_url] = cache.names(names_of)
        else:
            on_demand.pop(type_url, None)
    # Virtual hosts and the directory that resolves hosts to them are generated together.
    directory = directory_of(resources) if VIRTUAL_HOST_TYPE in types else previous.directory
    return _snapshot(entries, on_demand, directory)


def with_types_of(previous: Snapshot, updated: Snapshot, types: frozenset[str]) -> Snapshot:
    """``previous`` with the entries and on-demand names of ``types`` taken from ``updated``
    (another proxy's update of the same maps by the same change)."""
    entries = dict(previous.entries)
    on_demand = dict(previous.on_demand)
    for t in types:
        if t in updated.entries:
            entries[t] = updated.entries[t]
        else:
            entries.pop(t, None)
        if t in updated.on_demand:
            on_demand[t] = updated.on_demand[t]
        else:
            on_demand.pop(t, None)
    directory = updated.directory if VIRTUAL_HOST_TYPE in types else previous.directory
    return _snapshot(entries, on_demand, directory)


def _eds_service_name(cluster: cluster_pb2.Cluster) -> str | None:
    if not cluster.HasField("type") or cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return cluster.eds_cluster_config.service_name or cluster.name
