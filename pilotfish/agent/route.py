"""Waiting for a route to the control plane before the agent's first call to it.

A runtime may start the agent as soon as the pod's network namespace exists, while the pod's
address and routes are still being made (the local runtime does: Envoy's own start needs no
network and is the longest step of a pod's). A call dialled before then fails at once with
"network unreachable", and the certificate request would be retried only after its backoff
(1 s). So the agent first waits, briefly, until the kernel has a route to one of the control
plane's addresses: ``connect()`` on a UDP socket looks the route up and sends nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence

from pilotfish.agent.settings import HostPort

log = logging.getLogger("pilotfish.agent")


def routable(address: HostPort) -> bool:
    """Whether the kernel has a route to ``address`` now (a host name: assumed so)."""
    try:
        ip = ipaddress.ip_address(address.host)
    except ValueError:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((str(ip), address.port))
        except OSError:
            return False
    return True


async def wait_for_route(
    addresses: Sequence[HostPort], timeout_s: float = 5.0, poll_s: float = 0.002
) -> bool:
    """Return once one of ``addresses`` is routable (True), or after ``timeout_s`` (False:
    the caller goes on, and its own errors and retries say what is wrong)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not any(routable(a) for a in addresses):
        if loop.time() >= deadline:
            log.warning(
                "no route to the control plane (%s) after %.0fs",
                ", ".join(f"{a.host}:{a.port}" for a in addresses),
                timeout_s,
            )
            return False
        await asyncio.sleep(poll_s)
    return True
