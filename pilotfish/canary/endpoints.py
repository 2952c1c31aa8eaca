"""Where the control plane sends a webhook that names a mesh Service.

Flagger runs in a pod and calls ``http://flagger-loadtester.test/`` through cluster DNS. The
control plane runs on the host, outside the pod network's names and service VIPs, but it can
reach pod IPs: a URL whose host is a stored Service (``NAME``, ``NAME.NS``, ``NAME.NS.svc``,
``NAME.NS.svc.<domain>``; a bare name in the canary's namespace) is sent to one ready pod of
that Service on the port's ``targetPort``, with the original ``Host`` header, as kube-proxy
would send it. Any other URL is called as written. Pure over stored bodies.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pilotfish.api.mesh import DEFAULT_DOMAIN_SUFFIX
from pilotfish.api.workloads import pod_target_port


@dataclass(frozen=True)
class Target:
    url: str
    #: The ``Host`` header to send (the name the URL was written with); None: as the URL says.
    host: str | None = None


def service_of(
    hostname: str, namespace: str, suffix: str = DEFAULT_DOMAIN_SUFFIX
) -> tuple[str, str]:
    """``(name, namespace)`` a host name means inside the mesh (Kubernetes' DNS names)."""
    parts = hostname.split(".")
    if len(parts) == 1:
        return parts[0], namespace
    rest = ".".join(parts[2:])
    if rest in ("", "svc", f"svc.{suffix}"):
        return parts[0], parts[1]
    return "", ""


def _ready(pod: Mapping[str, Any]) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return cond.get("status") == "True"
    return False


def resolve(
    url: str,
    namespace: str,
    services: Mapping[tuple[str, str], Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    rng: random.Random | None = None,
) -> Target:
    """Where to send ``url`` (see the module docstring)."""
    parts = urlsplit(url)
    hostname = parts.hostname or ""
    name, ns = service_of(hostname, namespace)
    svc = services.get((ns, name))
    if svc is None:
        return Target(url)
    spec = svc.get("spec") or {}
    wanted = parts.port or (443 if parts.scheme == "https" else 80)
    port = next((p for p in spec.get("ports") or [] if int(p.get("port") or 0) == wanted), None)
    selector = spec.get("selector") or {}
    if port is None or not selector:
        return Target(url)
    ready = [
        p
        for p in pods
        if (p.get("metadata") or {}).get("namespace") == ns
        and all(((p.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in selector.items())
        and _ready(p)
        and (p.get("status") or {}).get("podIP")
    ]  # fmt: skip
    if not ready:
        return Target(url)
    pod = (rng or random).choice(ready)
    target = pod_target_port(port, pod)
    if target is None:
        return Target(url)
    netloc = f"{pod['status']['podIP']}:{target}"
    return Target(urlunsplit(parts._replace(netloc=netloc)), host=parts.netloc)
