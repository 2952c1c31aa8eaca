"""What a proxy says about its own workload in Istio's standard metrics: one contract between
the agent (which puts it in Envoy's environment) and translation (which reads it there with
``%ENVIRONMENT(...)%``), plus Istio's canonical-service rules, used for endpoints too."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "CLUSTER_ID",
    "DURATION_BUCKETS",
    "ENDPOINT_FIELDS",
    "HISTOGRAM_BUCKETS",
    "OWN_LABEL_REMOVED",
    "PACKED_GROUPS",
    "PACKED_TAG",
    "PEER_ENV",
    "PEER_ENV_PACKED",
    "PEER_FIELDS",
    "SERVICE_FIELDS",
    "SIZE_BUCKETS",
    "UNKNOWN",
    "canonical_revision",
    "canonical_service",
    "own_label",
    "pack_fields",
    "peer_environment",
    "unpack_labels",
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
#: Envoy environment variable holding the peer header's value whole: the values of
#: :data:`PEER_FIELDS` packed (:func:`pack_fields`). One short formatter per route
#: configuration's virtual host instead of one per field.
PEER_ENV_PACKED = "PILOTFISH_PEER"


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
#: The value Envoy writes for one of the proxy's own labels, or of a packed group's labels
#: (:data:`PACKED_GROUPS`), that a Telemetry ``tagOverrides`` removed: the agent drops the
#: label instead of adding or unpacking it.
OWN_LABEL_REMOVED = "pilotfish-label-removed"


def own_label(reporter: str, key: str) -> str:
    """The metric label of workload value ``key`` on the reporting proxy's own side."""
    side = "source" if reporter == "source" else "destination"
    return f"{side}_{OWN_LABEL_NAMES[key]}"


def peer_environment(values: Mapping[str, str]) -> dict[str, str]:
    """Envoy's environment for :func:`workload_values` (the separators of :func:`pack_fields`
    replaced, since the peer header packs these values), and the peer header's value packed
    (:data:`PEER_ENV_PACKED`)."""
    env = {PEER_ENV[k]: _field(v) for k, v in values.items() if k in PEER_ENV}
    env[PEER_ENV_PACKED] = pack_fields(values, PEER_FIELDS)
    return env


# ---- packed labels ------------------------------------------------------------------------
#
# Envoy's stats access logger formats every tag of every metric once per request, and most of
# its cost per request is in looking values up (a metadata lookup per label per metric). So
# the standard metrics carry their labels packed into one Envoy tag: its name lists the labels
# (``PACKED_TAG`` + ``__`` + the labels or groups, joined by ``__``), its value their values
# joined by ``|``; a group stands for several labels whose values the control plane (endpoint
# and cluster metadata) or the caller's sidecar (the peer header) packed once, joined by ``;``.
# The agent unpacks them into Istio's labels when it serves ``/stats/prometheus``
# (:func:`unpack_labels`), so Prometheus sees exactly Istio's series. Only the last value may
# contain ``|`` (a peer certificate's URI: it is split off last); group fields never contain
# ``;`` or ``|`` (:func:`pack_fields` replaces them).

#: The name (prefix) of the Envoy tag that carries the packed labels.
PACKED_TAG = "pilotfish_labels"
PACK_SEPARATOR = "|"
FIELD_SEPARATOR = ";"
#: A workload's values in an endpoint's packed metadata (``istio:labels``), in order.
ENDPOINT_FIELDS = ("workload", "namespace", "app", "version", "canonical_service",
                   "canonical_revision", "cluster")  # fmt: skip
#: A caller's values in the peer header its sidecar sends, in order (the namespace is not
#: among them: the server takes it from the caller's verified certificate).
PEER_FIELDS = ("workload", "app", "version", "canonical_service", "canonical_revision", "cluster")
#: A service's values in a cluster's packed metadata (``istio:service_labels``), in order.
SERVICE_FIELDS = ("service", "name", "namespace")

#: Group token -> the labels its fields are, in order.
PACKED_GROUPS: dict[str, tuple[str, ...]] = {
    "destination_peer": tuple(own_label("destination", k) for k in ENDPOINT_FIELDS),
    "destination_svc": (
        "destination_service",
        "destination_service_name",
        "destination_service_namespace",
    ),
    "source_peer": tuple(own_label("source", k) for k in PEER_FIELDS),
}


def _field(value: str) -> str:
    return value.replace(PACK_SEPARATOR, "_").replace(FIELD_SEPARATOR, "_")


def pack_fields(values: Mapping[str, str], fields: tuple[str, ...]) -> str:
    """``values`` of ``fields`` as one group value (missing ones empty). Pure."""
    return FIELD_SEPARATOR.join(_field(values.get(k, "")) for k in fields)


def unpack_labels(name: str, value: str) -> list[tuple[str, str]] | None:
    """The labels a packed Envoy tag stands for (``None``: ``name`` is not a packed tag).

    A value that does not split into its labels (a group Envoy found no metadata for, a peer
    header that was not a sidecar's) gives those labels empty values, as Envoy writes what it
    cannot fill. Pure."""
    prefix = PACKED_TAG + "__"
    if not name.startswith(prefix):
        return None
    tokens = name[len(prefix) :].split("__")
    values = value.split(PACK_SEPARATOR, len(tokens) - 1)
    if len(values) != len(tokens):
        values = [""] * len(tokens)
    out: list[tuple[str, str]] = []
    for token, v in zip(tokens, values, strict=True):
        group = PACKED_GROUPS.get(token)
        if group is None:
            out.append((token, v))
            continue
        fields = v.split(FIELD_SEPARATOR)
        if len(fields) != len(group):
            fields = [""] * len(group)
        out.extend(zip(group, fields, strict=True))
    return out
