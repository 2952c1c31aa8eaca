"""What a proxy says about its own workload in Istio's standard metrics: one contract between
the agent (which puts it in Envoy's environment) and translation (which reads it there with
``%ENVIRONMENT(...)%``), plus Istio's canonical-service rules, used for endpoints too."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CLUSTER_ID",
    "DURATION_BUCKETS",
    "HISTOGRAM_BUCKETS",
    "OWN_LABEL_REMOVED",
    "PEER_ENV",
    "SIZE_BUCKETS",
    "UNKNOWN",
    "canonical_revision",
    "canonical_service",
    "own_label",
    "peer_environment",
    "workload_values",
]

UNKNOWN = "unknown"
#: Istio's histogram buckets: request durations (milliseconds) and sizes (bytes).
DURATION_BUCKETS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
                    60000, 300000, 600000, 1800000, 3600000)  # fmt: skip
SIZE_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)
#: Envoy's stat names of Istio's histograms (``istio.`` + the metric).
HISTOGRAM_BUCKETS = {
    "istio.request_duration_milliseconds": DURATION_BUCKETS,
    "istio.request_bytes": SIZE_BUCKETS,
    "istio.response_bytes": SIZE_BUCKETS,
}
#: Istio's cluster id of a single-cluster mesh (``source_cluster``/``destination_cluster``).
CLUSTER_ID = "Kubernetes"

#: Envoy environment variable per workload value.
PEER_ENV = {
    "workload": "PILOTFISH_WORKLOAD",
    "namespace": "PILOTFISH_NAMESPACE",
    "principal": "PILOTFISH_PRINCIPAL",
    "app": "PILOTFISH_APP",
    "version": "PILOTFISH_VERSION",
    "canonical_service": "PILOTFISH_CANONICAL_SERVICE",
    "canonical_revision": "PILOTFISH_CANONICAL_REVISION",
    "cluster": "PILOTFISH_CLUSTER",
}


def canonical_service(labels: Mapping[str, str], workload: str) -> str:
    """Istio's canonical service: its label, else ``app.kubernetes.io/name``, ``app``, the
    workload name."""
    for key in ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app"):
        if labels.get(key):
            return labels[key]
    return workload or UNKNOWN


def canonical_revision(labels: Mapping[str, str]) -> str:
    """Istio's canonical revision: its label, else ``app.kubernetes.io/version``, ``version``,
    ``latest``."""
    for key in ("service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"):
        if labels.get(key):
            return labels[key]
    return "latest"


def workload_values(
    namespace: str, workload: str, labels: Mapping[str, str], principal: str = ""
) -> dict[str, str]:
    """The metric label values of a workload (``unknown`` where Istio writes it). Pure."""
    return {
        "workload": workload or UNKNOWN,
        "namespace": namespace or UNKNOWN,
        "principal": principal or UNKNOWN,
        "app": labels.get("app") or UNKNOWN,
        "version": labels.get("version") or UNKNOWN,
        "canonical_service": canonical_service(labels, workload),
        "canonical_revision": canonical_revision(labels),
        "cluster": CLUSTER_ID,
    }


#: The label a standard metric carries for each workload value of the reporting proxy's own
#: side (``source_*`` on ``reporter="source"``, ``destination_*`` otherwise).
OWN_LABEL_NAMES = {
    "workload": "workload",
    "namespace": "workload_namespace",
    "principal": "principal",
    "app": "app",
    "version": "version",
    "canonical_service": "canonical_service",
    "canonical_revision": "canonical_revision",
    "cluster": "cluster",
}
#: The value Envoy writes for one of the proxy's own labels that a Telemetry ``tagOverrides``
#: removed: the agent drops the label instead of adding it.
OWN_LABEL_REMOVED = "pilotfish-label-removed"


def own_label(reporter: str, key: str) -> str:
    """The metric label of workload value ``key`` on the reporting proxy's own side."""
    side = "source" if reporter == "source" else "destination"
    return f"{side}_{OWN_LABEL_NAMES[key]}"


def peer_environment(values: Mapping[str, str]) -> dict[str, str]:
    """Envoy's environment for :func:`workload_values`."""
    return {PEER_ENV[k]: v for k, v in values.items() if k in PEER_ENV}
