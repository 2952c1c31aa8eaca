"""Istio's per-pod proxy settings: the ``proxy.istio.io/config`` annotation.

The annotation holds a ProxyConfig in YAML, merged over the mesh's ``defaultConfig``. Of it,
Pilotfish applies ``proxyMetadata.SECRET_TTL`` (the lifetime the sidecar asks the mesh CA for
its workload certificate, as Istio's ``pilot-agent`` reads it; default 24 h) and
``holdApplicationUntilProxyStarts`` (the pod's apps start only once its sidecar is ready;
default: the mesh's, else false). Every other field is reported by :func:`proxy_config` as not
applied, so validation warns about it at apply.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pilotfish.api.duration import parse_duration

ANNOTATION = "proxy.istio.io/config"
#: The workload certificate's lifetime (Istio's agent environment variable).
SECRET_TTL = "SECRET_TTL"
#: The ProxyConfig field that holds a pod's apps until its sidecar is ready.
HOLD_APPLICATION = "holdApplicationUntilProxyStarts"


@dataclass(frozen=True)
class PodProxyConfig:
    #: Seconds, or None for the agent's default.
    secret_ttl: float | None = None
    #: ``holdApplicationUntilProxyStarts`` as the pod sets it (None: the mesh's default).
    hold_application: bool | None = None
    #: ``(field path, message)`` of what is wrong or not applied.
    problems: list[tuple[str, str]] = field(default_factory=list)


def proxy_config(annotations: Mapping[str, Any], metadata: str = "metadata") -> PodProxyConfig:
    """What a pod's ``proxy.istio.io/config`` asks for (nothing when it has none); problems
    name fields under ``metadata`` (``spec.template.metadata`` for a Deployment)."""
    raw = annotations.get(ANNOTATION)
    if raw is None:
        return PodProxyConfig()
    path = f"{metadata}.annotations[{ANNOTATION}]"
    try:
        doc = yaml.safe_load(str(raw)) or {}
    except yaml.YAMLError as exc:
        return PodProxyConfig(problems=[(path, f"not YAML: {exc}")])
    if not isinstance(doc, dict):
        return PodProxyConfig(problems=[(path, "must be a ProxyConfig (a YAML mapping)")])
    not_applied = "accepted but not applied yet"
    applied = ("proxyMetadata", HOLD_APPLICATION)
    problems = [(f"{path}.{k}", not_applied) for k in doc if k not in applied]
    hold = doc.get(HOLD_APPLICATION)
    if hold is not None and not isinstance(hold, bool):
        problems.append((f"{path}.{HOLD_APPLICATION}", "must be true or false"))
        hold = None
    meta = doc.get("proxyMetadata") or {}
    if not isinstance(meta, dict):
        return PodProxyConfig(
            hold_application=hold,
            problems=[*problems, (f"{path}.proxyMetadata", "must be a mapping")],
        )
    ttl: float | None = None
    for key, value in meta.items():
        where = f"{path}.proxyMetadata.{key}"
        if key != SECRET_TTL:
            problems.append((where, "accepted but not applied yet"))
            continue
        try:
            ttl = parse_duration(str(value))
        except ValueError as exc:
            problems.append((where, f"{exc} (e.g. 1h, 90s)"))
            continue
        if ttl <= 0:
            problems.append((where, "must be positive"))
            ttl = None
    return PodProxyConfig(ttl, hold, problems)


__all__ = ["ANNOTATION", "HOLD_APPLICATION", "SECRET_TTL", "PodProxyConfig", "proxy_config"]
