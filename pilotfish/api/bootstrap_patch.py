"""EnvoyFilter BOOTSTRAP patches: which apply to one proxy, and applying them to its bootstrap.

Istio MERGEs an EnvoyFilter's BOOTSTRAP patches into the bootstrap of the proxies it selects,
so a change takes effect when a proxy starts (Istio's docs: a proxy restart). In Pilotfish the
agent writes Envoy's bootstrap and talks to the control plane only over xDS and the CA's gRPC,
and it starts Envoy at once, so whoever starts a proxy hands it the patches that select it:
the local runtime, which reads the config anyway, writes them to a file in the pod's run
directory and starts the agent with ``--bootstrap-patches FILE``; on a VM the file is given
the same way, or put as ``bootstrap-patches.json`` in the directory ``pilotfish proxy
--config-dir`` reads. A proxy no BOOTSTRAP patch selects gets no file and starts as before.

Which EnvoyFilters apply to a proxy is Istio's rule, and this is its one home (translation
uses it for every other ``applyTo``): those of the root namespace (mesh-wide) and those of
the proxy's namespace, each if its ``workloadSelector`` labels are a subset of the proxy's
labels and it has no ``targetRefs`` (those attach to gateways and waypoints Pilotfish does not
run); ordered by ``priority``, then root namespace first, then creation time, then
``name.namespace``. Of a BOOTSTRAP patch, ``match.context`` (GATEWAY for routers,
SIDECAR_INBOUND/SIDECAR_OUTBOUND for sidecars, ANY) and ``match.proxy`` (node metadata
equal, ``proxyVersion`` against ``ISTIO_VERSION``) are checked; MERGE is the one operation
(the only one Istio applies to the bootstrap).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: The file the patches of one proxy are handed over in (a JSON list of Bootstrap values).
BOOTSTRAP_PATCHES_FILE = "bootstrap-patches.json"


def selects(
    filter_namespace: str,
    selector: Mapping[str, str] | None,
    root_namespace: str,
    namespace: str,
    labels: Mapping[str, str],
) -> bool:
    """Whether an EnvoyFilter of ``filter_namespace`` with ``selector`` applies to a proxy of
    ``namespace`` with ``labels`` (Istio's scoping; see the module doc)."""
    if filter_namespace not in (root_namespace, namespace):
        return False
    return selector is None or all(labels.get(k) == v for k, v in selector.items())


def order_key(
    priority: int, filter_namespace: str, root_namespace: str, creation: str, name: str
) -> tuple[int, bool, str, str]:
    """Istio's order of the EnvoyFilters of one proxy: priority, root namespace first,
    creation time, ``name.namespace``."""
    return (priority, filter_namespace != root_namespace, creation, f"{name}.{filter_namespace}")


def _proxy_match(match: Mapping[str, Any], metadata: Mapping[str, Any]) -> bool:
    proxy = match.get("proxy") or {}
    version = proxy.get("proxyVersion")
    if version:
        have = str(metadata.get("ISTIO_VERSION") or "")
        try:
            if not have or not re.match(version, have):
                return False
        except re.error:
            return False
    wanted = proxy.get("metadata") or {}
    return all(str(metadata.get(k, "")) == str(v) for k, v in wanted.items())


def bootstrap_patches(
    envoy_filters: Iterable[Mapping[str, Any]],
    *,
    root_namespace: str,
    namespace: str,
    labels: Mapping[str, str],
    router: bool = False,
    metadata: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The BOOTSTRAP MERGE values that apply to one proxy, in Istio's order, from stored
    EnvoyFilter objects (as the API lists them)."""
    chosen = []
    for body in envoy_filters:
        meta = body.get("metadata") or {}
        spec = body.get("spec") or {}
        ns = str(meta.get("namespace") or "default")
        selector = (spec.get("workloadSelector") or {}).get("labels")
        if spec.get("targetRefs") or not selects(ns, selector, root_namespace, namespace, labels):
            continue
        key = order_key(
            int(spec.get("priority") or 0),
            ns,
            root_namespace,
            str(meta.get("creationTimestamp") or ""),
            str(meta.get("name") or ""),
        )
        chosen.append((key, spec))
    chosen.sort(key=lambda kv: kv[0])
    contexts = ("ANY", "GATEWAY") if router else ("ANY", "SIDECAR_INBOUND", "SIDECAR_OUTBOUND")
    out = []
    for _, spec in chosen:
        for cp in spec.get("configPatches") or []:
            patch = cp.get("patch") or {}
            match = cp.get("match") or {}
            if cp.get("applyTo") != "BOOTSTRAP" or patch.get("operation") != "MERGE":
                continue
            if (match.get("context") or "ANY") not in contexts:
                continue
            if not _proxy_match(match, metadata or {}) or not isinstance(patch.get("value"), dict):
                continue
            out.append(patch["value"])
    return out


def has_bootstrap_patch(body: Mapping[str, Any]) -> bool:
    """Whether a stored EnvoyFilter has any BOOTSTRAP patch."""
    spec = body.get("spec") or {}
    return any(cp.get("applyTo") == "BOOTSTRAP" for cp in spec.get("configPatches") or [])


def apply_bootstrap_patches(
    bootstrap: Mapping[str, Any], patches: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``bootstrap`` (Envoy's JSON) with ``patches`` MERGEd in order, as Istio merges them
    (``envoyvalue.merge``). Raises ``PatchValueError`` for a patch that is not a Bootstrap."""
    from google.protobuf import json_format

    from pilotfish.api.envoyvalue import merge, parse_value

    msg = parse_value("BOOTSTRAP", dict(bootstrap))
    for p in patches:
        merge(msg, parse_value("BOOTSTRAP", dict(p)))
    out: dict[str, Any] = json_format.MessageToDict(msg, preserving_proto_field_name=True)
    return out
