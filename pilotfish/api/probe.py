"""A WorkloadGroup's ``probe``: Istio's ``ReadinessProbe``, as the agent runs it.

One home for the fields and Kubernetes' defaults: validation at apply and the agent's
prober (``pilotfish.agent.workload_health``) both parse it here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The probe's fields the agent enforces; with the fields of each action.
PROBE_FIELDS = frozenset(
    {
        "httpGet",
        "tcpSocket",
        "exec",
        "initialDelaySeconds",
        "periodSeconds",
        "timeoutSeconds",
        "successThreshold",
        "failureThreshold",
    }
)
PROBE_ACTION_FIELDS = {
    "httpGet": frozenset({"path", "port", "host", "scheme", "httpHeaders"}),
    "tcpSocket": frozenset({"port", "host"}),
    "exec": frozenset({"command"}),
}


class ProbeError(ValueError):
    """A probe that cannot be run (names the field)."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Istio's ``ReadinessProbe`` (Kubernetes' defaults for the timing fields)."""

    kind: str  # "httpGet" | "tcpSocket" | "exec"
    port: int = 0
    host: str = "127.0.0.1"
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def parse(cls, raw: Mapping[str, Any], default_host: str = "127.0.0.1") -> Probe:
        """From the YAML/JSON form of a WorkloadGroup's ``probe``; ProbeError names the field.
        ``default_host``: dialled when the probe names no ``host`` (the agent: the workload's
        address, where the app of a host listens)."""

        def number(name: str, default: int, minimum: int) -> int:
            value = raw.get(name, default)
            if not isinstance(value, int) or value < minimum:
                raise ProbeError(f"probe.{name}: must be an integer >= {minimum}")
            return value or default

        timing = {
            "initial_delay": float(number("initialDelaySeconds", 0, 0)),
            "period": float(number("periodSeconds", 10, 0)),
            "timeout": float(number("timeoutSeconds", 1, 0)),
            "success_threshold": number("successThreshold", 1, 0),
            "failure_threshold": number("failureThreshold", 3, 0),
        }
        kinds = [k for k in ("httpGet", "tcpSocket", "exec") if raw.get(k) is not None]
        if len(kinds) != 1:
            raise ProbeError("probe: exactly one of httpGet, tcpSocket, exec is required")
        kind = kinds[0]
        spec = raw[kind] or {}
        if kind == "exec":
            command = tuple(str(c) for c in spec.get("command") or ())
            if not command:
                raise ProbeError("probe.exec.command: required")
            return cls(kind, command=command, **timing)  # type: ignore[arg-type]
        port = spec.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise ProbeError(f"probe.{kind}.port: must be a port number in 1..65535")
        host = str(spec.get("host") or default_host)
        if kind == "tcpSocket":
            return cls(kind, port=port, host=host, **timing)  # type: ignore[arg-type]
        scheme = str(spec.get("scheme") or "HTTP").upper()
        if scheme not in ("HTTP", "HTTPS"):
            raise ProbeError("probe.httpGet.scheme: must be HTTP or HTTPS")
        headers = tuple(
            (str(h.get("name") or ""), str(h.get("value") or ""))
            for h in spec.get("httpHeaders") or ()
        )
        return cls(
            kind,
            port=port,
            host=host,
            path=str(spec.get("path") or "/"),
            scheme=scheme,
            headers=headers,
            **timing,  # type: ignore[arg-type]
        )
