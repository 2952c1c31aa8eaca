"""The local mesh's Prometheus: its config, its command line and the pods it scrapes.

``pilotfish up`` runs Debian's ``prometheus`` as a background process on ``127.0.0.1:9090``
(Istio's addon port) with its config and TSDB under ``<state>/prometheus/``. It scrapes every
5 s, with Istio's conventions:

- job ``istiod``: the control plane's ``/metrics`` on its API port (labels ``app=istiod``,
  ``namespace=istio-system``, as Istio's dashboards select pilot's series);
- job ``istio-ingressgateway``: the gateway agent's ``/stats/prometheus`` (port 15020);
- job ``kubernetes-pods``: every pod from a ``file_sd_configs`` targets file the pod runtime
  rewrites as pods come and go (:func:`pod_targets`): a pod with a sidecar at
  ``POD_IP:15020/stats/prometheus`` (the agent merges the app's own metrics when the pod
  declares ``prometheus.io/scrape``), a pod without one at its ``prometheus.io/port`` and
  ``prometheus.io/path`` when it declares ``prometheus.io/scrape: "true"``; labels
  ``namespace``, ``pod``, ``app``, ``version`` like Istio's ``kubernetes-pods`` job.
  A pod that is gone leaves the file, so its series go stale instead of piling up.

It also loads the dashboard graph's recording rules (:func:`graph_rules_yaml`, written to
``rules/graph.yml``): per-edge p50/p95/p99 response times, so the graph reads a few series
per edge instead of every duration bucket. The scraped series stay as they are.

Everything here is pure except :func:`write_targets` (an atomic file write).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pilotfish.api.mesh import AGENT_PORT
from pilotfish.dashboard.graph import recording_rules

__all__ = [
    "DEFAULT_PORT",
    "INSTALL_HINT",
    "PodScrape",
    "PrometheusLayout",
    "config_for",
    "graph_rules_yaml",
    "pod_scrape",
    "pod_targets",
    "prometheus_argv",
    "write_targets",
]

DEFAULT_PORT = 9090
SCRAPE_INTERVAL = "5s"
#: How to get the binary when it is missing (what ``status`` says).
INSTALL_HINT = "apt-get install prometheus (or scripts/install-system-deps.sh)"
STATS_PATH = "/stats/prometheus"
SCRAPE = "prometheus.io/scrape"
PORT = "prometheus.io/port"
PATH = "prometheus.io/path"
#: Pod labels copied onto each target (Istio's job maps every pod label; these are the ones
#: its dashboards use).
TARGET_LABELS = ("app", "version")


@dataclass(frozen=True)
class PodScrape:
    """A pod's own metrics endpoint, from its ``prometheus.io/*`` annotations."""

    port: int
    path: str = "/metrics"


def pod_scrape(annotations: Mapping[str, Any]) -> PodScrape | None:
    """The app's endpoint when the pod declares ``prometheus.io/scrape: "true"`` and a valid
    ``prometheus.io/port`` (path ``/metrics`` unless ``prometheus.io/path``)."""
    if str(annotations.get(SCRAPE, "")).lower() != "true":
        return None
    port = str(annotations.get(PORT, "")).strip()
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    path = str(annotations.get(PATH) or "/metrics").strip()
    return PodScrape(int(port), path if path.startswith("/") else "/" + path)


def scrape_disabled(annotations: Mapping[str, Any]) -> bool:
    return str(annotations.get(SCRAPE, "")).lower() == "false"


def pod_targets(
    pods: Iterable[Mapping[str, Any]], injected_annotation: str
) -> list[dict[str, Any]]:
    """``file_sd_configs`` entries for the running pods with an address. Pure.

    ``injected_annotation`` marks a pod with a sidecar (``sidecar.istio.io/status``).
    """
    out: list[dict[str, Any]] = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        ip = status.get("podIP")
        if not ip or status.get("phase") != "Running":
            continue
        annotations = meta.get("annotations") or {}
        if scrape_disabled(annotations):
            continue
        if injected_annotation in annotations:
            address, path = f"{ip}:{AGENT_PORT}", STATS_PATH
        else:
            scrape = pod_scrape(annotations)
            if scrape is None:
                continue
            address, path = f"{ip}:{scrape.port}", scrape.path
        labels = {
            "namespace": str(meta.get("namespace") or "default"),
            "pod": str(meta.get("name") or ""),
        }
        pod_labels = meta.get("labels") or {}
        labels.update({k: str(pod_labels[k]) for k in TARGET_LABELS if k in pod_labels})
        labels["__metrics_path__"] = path
        out.append({"targets": [address], "labels": labels})
    out.sort(key=lambda t: (t["labels"]["namespace"], t["labels"]["pod"]))
    return out


@dataclass(frozen=True)
class PrometheusLayout:
    """Where the local Prometheus keeps its files (under the mesh's state directory)."""

    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> PrometheusLayout:
        """The layout of the mesh whose state directory is ``state_dir``."""
        return cls(state_dir / "prometheus")

    @property
    def config(self) -> Path:
        return self.root / "prometheus.yml"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def graph_rules(self) -> Path:
        return self.root / "rules" / "graph.yml"

    @property
    def targets_dir(self) -> Path:
        return self.root / "targets"

    @property
    def pod_targets(self) -> Path:
        return self.targets_dir / "pods.json"


def config_for(
    *,
    api: str,
    gateway_agent: str,
    targets_dir: Path,
    self_address: str,
    interval: str = SCRAPE_INTERVAL,
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """The scrape config (as a dict to dump as YAML). Pure. Addresses are ``host:port``."""
    return {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        **({"rule_files": [str(f) for f in rule_files]} if rule_files else {}),
        "scrape_configs": [
            {
                "job_name": "istiod",
                "metrics_path": "/metrics",
                "static_configs": [
                    {
                        "targets": [api],
                        "labels": {"app": "istiod", "namespace": "istio-system"},
                    }
                ],
            },
            {
                "job_name": "istio-ingressgateway",
                "metrics_path": STATS_PATH,
                "static_configs": [
                    {
                        "targets": [gateway_agent],
                        "labels": {
                            "app": "istio-ingressgateway",
                            "istio": "ingressgateway",
                            "namespace": "istio-system",
                            "pod": "istio-ingressgateway",
                        },
                    }
                ],
            },
            {
                "job_name": "kubernetes-pods",
                "file_sd_configs": [
                    {"files": [str(targets_dir / "*.json")], "refresh_interval": interval}
                ],
            },
            {"job_name": "prometheus", "static_configs": [{"targets": [self_address]}]},
        ],
    }


def render_config(config: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(config), sort_keys=False, default_flow_style=False)


def graph_rules_yaml() -> str:
    """The dashboard graph's recording rules as a Prometheus rule file. Pure."""
    return render_config(recording_rules())


def prometheus_argv(binary: str, layout: PrometheusLayout, listen: str) -> list[str]:
    """How the mesh runs Prometheus. Pure."""
    return [
        binary,
        f"--config.file={layout.config}",
        f"--storage.tsdb.path={layout.data}",
        "--storage.tsdb.retention.time=2d",
        f"--web.listen-address={listen}",
        "--web.enable-lifecycle",
    ]


def write_targets(path: Path, targets: Sequence[Mapping[str, Any]]) -> None:
    """Write a ``file_sd`` targets file atomically (Prometheus re-reads it on change)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(list(targets), indent=2) + "\n")
    tmp.replace(path)
