"""Which roots each workload trusts and is signed by, and the agents watching the trust bundle.

Agents keep a ``WatchTrustBundle`` stream open to the CA (``ca_grpc.py``): they report their
node, certificate chain and trust bundle when the stream opens, and get the CA's trust bundle
at once and again whenever it changes (a root added, activated or retired). An agent whose
bundle differs from the CA's renews its certificate at once, and the new one (signed
certificates carry the bundle) is recorded here too. This is what a root rotation waits on
(:func:`rotation_progress`): every watching workload trusting the new root, then signed by it,
then trusting it alone.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes

from pilotfish.identity import pki


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER, hex (as ``openssl x509 -fingerprint -sha256``, without colons)."""
    return cert.fingerprint(hashes.SHA256()).hex()


def bundle_fingerprints(bundle_pem: str) -> tuple[str, ...]:
    try:
        return tuple(fingerprint(c) for c in pki.load_certificates(bundle_pem))
    except ValueError:
        return ()


def issuing_root(chain_pem: str, roots: Iterable[x509.Certificate]) -> str:
    """Fingerprint of the root among ``roots`` that the chain's last certificate was issued
    by ("" when none)."""
    try:
        top = pki.load_certificates(chain_pem)[-1]
    except (ValueError, IndexError):
        return ""
    for root in roots:
        if root.subject != top.issuer:
            continue
        try:
            top.verify_directly_issued_by(root)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return fingerprint(root)
    return ""


@dataclass(frozen=True)
class WorkloadTrust:
    """What one agent's Envoy has: the roots it trusts and the root its certificate leads to."""

    node: str
    identity: str
    trusts: tuple[str, ...]
    issuer: str
    watching: bool
    updated: float


class TrustWatch:
    """The agents watching the trust bundle, and what each last reported. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._workloads: dict[str, WorkloadTrust] = {}
        self._streams: dict[str, int] = {}

    def changed(self) -> None:
        """The trust bundle changed: wake every watching stream (from any thread)."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def subscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), event))

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters = {w for w in self._waiters if w[1] is not event}

    def record(
        self,
        node: str,
        identity: str,
        chain_pem: str,
        bundle_pem: str,
        roots: Iterable[x509.Certificate],
    ) -> None:
        """What ``node`` serves now (after a signature, or as reported by its agent)."""
        if not node:
            return
        entry = WorkloadTrust(
            node=node,
            identity=identity,
            trusts=bundle_fingerprints(bundle_pem),
            issuer=issuing_root(chain_pem, roots),
            watching=False,
            updated=time.time(),
        )
        with self._lock:
            entry = _with_watching(entry, self._streams.get(node, 0) > 0)
            self._workloads[node] = entry

    def stream_opened(self, node: str) -> None:
        with self._lock:
            self._streams[node] = self._streams.get(node, 0) + 1
            if node in self._workloads:
                self._workloads[node] = _with_watching(self._workloads[node], True)

    def stream_closed(self, node: str) -> None:
        with self._lock:
            left = self._streams.get(node, 0) - 1
            if left > 0:
                self._streams[node] = left
                return
            self._streams.pop(node, None)
            # Kept a while (an agent reopening its stream reports again), then forgotten.
            if node in self._workloads:
                w = _with_watching(self._workloads[node], False)
                self._workloads[node] = WorkloadTrust(
                    w.node, w.identity, w.trusts, w.issuer, False, time.time()
                )

    def workloads(self, keep: float = 60.0) -> list[WorkloadTrust]:
        """Every workload watching, and those that stopped less than ``keep`` seconds ago."""
        cutoff = time.time() - keep
        with self._lock:
            for node, w in list(self._workloads.items()):
                if not w.watching and w.updated < cutoff:
                    del self._workloads[node]
            return sorted(self._workloads.values(), key=lambda w: w.node)


def _with_watching(w: WorkloadTrust, watching: bool) -> WorkloadTrust:
    return WorkloadTrust(w.node, w.identity, w.trusts, w.issuer, watching, w.updated)


__all__ = [
    "TrustWatch",
    "WorkloadTrust",
    "bundle_fingerprints",
    "fingerprint",
    "issuing_root",
]
