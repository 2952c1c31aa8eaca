"""One VIP, one hostname: the store rule that keeps allocated addresses unique.

The addresses a control plane allocates are stored in the objects themselves: a Service's
``spec.clusterIP`` and a ServiceEntry's ``status.addresses`` (``{value, host}``). Several
control planes allocate on their own, so two of them may pick the same address for two
hostnames at the same moment; the store refuses the second commit (``AddressTakenError``,
naming the holder) and the allocator then takes the next free address. Every backend runs
this check inside the transaction that writes, after taking its write lock (PostgreSQL: the
row lock on the revision every commit takes; SQLite: ``BEGIN IMMEDIATE``; memory: its lock),
so no two commits can both pass it with the same address, whatever the timing.

An address may be shared by objects of the same hostname (two ServiceEntries naming one host
share its VIP; so does a ServiceEntry for a Service's own ``NAME.NAMESPACE.svc...`` host).
A ServiceEntry's own ``spec.addresses`` are the user's and are not checked (Istio allows any).
Only addresses an object newly holds are checked, so a store that already holds a duplicate
(written before this rule) keeps accepting updates of both objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pilotfish.config.store.base import Event, Key, StoredObject
from pilotfish.errors import AddressTakenError

#: The stored objects that may hold any of these addresses (a superset is fine).
Holders = Callable[[set[str]], Iterable[StoredObject]]

HOLDER_KINDS = ("Service", "ServiceEntry")


def held(kind: str, key: Key, body: dict[str, Any]) -> list[tuple[str, str]]:
    """The ``(address, hostname)`` pairs ``body`` holds (Service: ``spec.clusterIP`` for
    ``NAME.NAMESPACE.svc``; ServiceEntry: ``status.addresses``)."""
    if kind == "Service":
        spec = body.get("spec")
        ip = spec.get("clusterIP") if isinstance(spec, dict) else None
        if isinstance(ip, str) and ip and ip != "None":
            return [(ip, f"{key.name}.{key.namespace}.svc")]
        return []
    if kind == "ServiceEntry":
        status = body.get("status")
        found = status.get("addresses") if isinstance(status, dict) else None
        out = []
        for a in found if isinstance(found, list) else []:
            if isinstance(a, dict) and isinstance(a.get("value"), str) and a.get("host"):
                out.append((a["value"], str(a["host"])))
        return out
    return []


def same_host(a: str, b: str) -> bool:
    """Whether two holders' hostnames name one service (a Service is held as
    ``NAME.NAMESPACE.svc``, whatever the mesh's domain suffix)."""
    if a == b:
        return True
    short, full = (a, b) if len(a) < len(b) else (b, a)
    return short.endswith(".svc") and full.startswith(short + ".")


def check_addresses(
    events: Sequence[Event], lookup: Callable[[Key], StoredObject | None], holders: Holders
) -> None:
    """Raise ``AddressTakenError`` if a put of ``events`` newly holds an address that another
    object holds for another hostname, once the commit is applied (``lookup`` and ``holders``
    read the state before it)."""
    after: dict[Key, StoredObject | None] = {}
    for e in events:
        after[e.object.key] = None if e.type == "DELETED" else e.object
    wanted: list[tuple[Key, str, str]] = []
    for key, obj in after.items():
        if obj is None or key.kind not in HOLDER_KINDS:
            continue
        old = lookup(key)
        before = set(held(key.kind, key, old.body)) if old is not None else set()
        wanted += [(key, a, h) for a, h in held(key.kind, key, obj.body) if (a, h) not in before]
    if not wanted:
        return
    # Every holder once the commit is applied: stored ones unless this commit changes them.
    holding: dict[str, list[tuple[Key, str]]] = {}
    for stored in holders({a for _, a, _ in wanted}):
        if stored.key not in after and stored.key.kind in HOLDER_KINDS:
            for a, h in held(stored.key.kind, stored.key, stored.body):
                holding.setdefault(a, []).append((stored.key, h))
    for key, obj in after.items():
        if obj is not None and key.kind in HOLDER_KINDS:
            for a, h in held(key.kind, key, obj.body):
                holding.setdefault(a, []).append((key, h))
    for key, address, host in wanted:
        for other, other_host in holding.get(address, []):
            if other != key and not same_host(host, other_host):
                raise AddressTakenError(key, address, other, other_host)


def like_patterns(addresses: set[str]) -> list[str]:
    """SQL ``LIKE`` patterns matching a stored JSON body that mentions one of ``addresses``
    (backends narrow their scan with them; ``held`` decides)."""
    if any("%" in a or "_" in a or "\\" in a for a in addresses):
        return ["%"]
    return [f'%"{a}"%' for a in sorted(addresses)]
