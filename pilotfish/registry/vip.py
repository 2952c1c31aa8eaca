"""Service VIPs the control plane allocates (Kubernetes' clusterIP, for a mesh without one).

A VIP is allocated the first time a service hostname is seen and kept for the life of the
service (until ``release``). The first choice is a hash of the hostname inside the range, so
the same hostname gets the same VIP on any control plane; on collision the next free address
is taken. The control plane keeps one allocator (``server.py`` makes it and hands it to the
registry and the HTTP API), keyed by hostname: the API gives an applied Service without a
``clusterIP`` its address from it, the registry its ServiceEntry VIPs, so the two never
collide. A Service's ``clusterIP`` is stored, so it survives restarts; ``assigned`` seeds a new
allocator with known assignments.

Several control planes on one store each keep an allocator, so two of them may hand the same
address to two hostnames at the same moment (a hash collision): the store refuses the second
commit (``pilotfish.config.store.addresses``) and ``reassign`` gives the loser the next free
address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import threading
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_VIP_RANGE = "10.96.0.0/16"


@dataclass(frozen=True, slots=True)
class VipSettings:
    cidr: str = DEFAULT_VIP_RANGE


class VipExhaustedError(RuntimeError):
    """Every address of the range is taken."""


class VipAllocator:
    """Allocates stable VIPs per hostname from a range. Thread-safe."""

    def __init__(
        self, settings: VipSettings | None = None, assigned: Mapping[str, str] | None = None
    ) -> None:
        self._net = ipaddress.ip_network((settings or VipSettings()).cidr)
        # Skip the network address and the first host (Kubernetes keeps .1 for the API server)
        # and the broadcast address.
        self._first = int(self._net.network_address) + 2
        self._size = max(1, self._net.num_addresses - 3)
        self._by_host: dict[str, str] = dict(assigned or {})
        self._taken: set[str] = set(self._by_host.values())
        self._lock = threading.Lock()
        self.dirty = False

    def allocate(self, hostname: str) -> str:
        """The VIP of ``hostname``, allocating one the first time it is asked for."""
        with self._lock:
            found = self._by_host.get(hostname)
            if found is not None:
                return found
            digest = hashlib.sha256(hostname.encode()).digest()
            start = int.from_bytes(digest[:8], "big") % self._size
            for i in range(self._size):
                addr = str(ipaddress.ip_address(self._first + (start + i) % self._size))
                if addr not in self._taken:
                    self._by_host[hostname] = addr
                    self._taken.add(addr)
                    self.dirty = True
                    return addr
            raise VipExhaustedError(f"no free VIP left in {self._net} for {hostname}")

    def reassign(self, hostname: str, address: str, holder: str) -> str:
        """A new VIP for ``hostname`` after the store refused ``address`` because ``holder``
        already holds it (another control plane allocated it at the same moment): the address
        is recorded as ``holder``'s and ``hostname`` gets the next free one."""
        with self._lock:
            if self._by_host.get(hostname) == address:
                del self._by_host[hostname]
            self._by_host[holder] = address
            self._taken.add(address)
            self.dirty = True
        return self.allocate(hostname)

    def copy(self) -> VipAllocator:
        """An allocator holding the same assignments that allocates on its own (previews: what
        it hands out is never reserved here)."""
        with self._lock:
            other = VipAllocator(assigned=self._by_host)
            other._net, other._first, other._size = self._net, self._first, self._size
            other._taken = set(self._taken)
        return other

    def reserve(self, hostname: str, address: str) -> None:
        """Record an address the user chose (``clusterIP``) so it is never handed out again."""
        with self._lock:
            if self._by_host.get(hostname) != address:
                self._by_host[hostname] = address
                self._taken.add(address)
                self.dirty = True

    def release(self, hostname: str) -> None:
        with self._lock:
            addr = self._by_host.pop(hostname, None)
            if addr is not None:
                self._taken.discard(addr)
                self.dirty = True

    def assigned(self) -> dict[str, str]:
        """A copy of every assignment (hostname -> VIP), to persist."""
        with self._lock:
            self.dirty = False
            return dict(self._by_host)
