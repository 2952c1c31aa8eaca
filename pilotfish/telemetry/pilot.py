"""The control plane's own metrics, with Istio's pilot names, for ``/metrics`` on its API port.

=======================================  ============================================  ==========
series                                   what                                          labels
=======================================  ============================================  ==========
``pilot_xds_pushes``                     responses written to proxies                  ``type``
                                         (``cds``...; ``cds_senderr`` when a write
                                         failed), as istiod counts them
``pilotfish_xds_resources_sent``         resources in the responses written (a         ``type``
                                         resource a proxy already has at the same
                                         version is not sent again, also after a
                                         control-plane restart); no Istio series
``pilot_total_xds_rejects``              NACKs from proxies                            ``type``
``pilot_xds``                            connected proxies (ADS streams)
``pilot_proxy_convergence_time``         seconds from a change to a proxy having all
                                         of its push (histogram, Istio's buckets)
``pilot_total_xds_internal_errors``      generation or handling failures
``pilot_push_triggers``                  pushes asked for, by reason                   ``type``
``galley_validation_passed`` /           resources accepted / refused by validation    ``resource``
``galley_validation_failed``                                                           (+``reason``)
``istio_build``                          ``component="pilot"``, ``tag`` = version
=======================================  ============================================  ==========

Counters keep Istio's names: without the ``_total`` that ``prometheus-client`` appends, so
queries written for istiod (its Grafana dashboards) work unchanged. Each control plane has its
own registry (several may run in one process, as in tests).
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from pilotfish.telemetry.promtext import CONTENT_TYPE, Family, Sample, render

__all__ = ["CONTENT_TYPE", "CONVERGENCE_BUCKETS", "PilotMetrics"]

#: Istio's buckets for ``pilot_proxy_convergence_time`` (seconds).
CONVERGENCE_BUCKETS = (0.1, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0)


class PilotMetrics:
    """Records the control plane's series; implements the xDS server's ``XdsMetrics``."""

    def __init__(self, version: str, connections: Callable[[], int] = lambda: 0) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._pushes = Counter(
            "pilot_xds_pushes",
            "Pilot build and send errors for lds, rds, cds and eds.",
            ["type"],
            registry=r,
        )
        self._resources = Counter(
            "pilotfish_xds_resources_sent",
            "Resources in the xDS responses written to proxies.",
            ["type"],
            registry=r,
        )
        self._rejects = Counter(
            "pilot_total_xds_rejects",
            "Total number of XDS responses from pilot rejected by proxy.",
            ["type"],
            registry=r,
        )
        self._internal = Counter(
            "pilot_total_xds_internal_errors",
            "Total number of internal XDS errors in pilot.",
            registry=r,
        )
        self._triggers = Counter(
            "pilot_push_triggers",
            "Total number of times a push was triggered, labeled by reason for the push.",
            ["type"],
            registry=r,
        )
        self._convergence = Histogram(
            "pilot_proxy_convergence_time",
            "Delay in seconds between config change and a proxy receiving all required "
            "configuration.",
            buckets=CONVERGENCE_BUCKETS,
            registry=r,
        )
        self._connected = Gauge(
            "pilot_xds", "Number of endpoints connected to this pilot using XDS.", registry=r
        )
        self._connected.set_function(lambda: float(connections()))
        self._valid = Counter(
            "galley_validation_passed", "Resource is valid.", ["resource"], registry=r
        )
        self._invalid = Counter(
            "galley_validation_failed",
            "Resource validation failed.",
            ["resource", "reason"],
            registry=r,
        )
        build = Gauge("istio_build", "Istio component build info", ["component", "tag"], registry=r)
        build.labels("pilot", version).set(1)

    # -- XdsMetrics

    def pushed(self, type_: str) -> None:
        self._pushes.labels(type_).inc()

    def sent_resources(self, type_: str, count: int) -> None:
        self._resources.labels(type_).inc(count)

    def send_error(self, type_: str) -> None:
        self._pushes.labels(f"{type_}_senderr").inc()

    def rejected(self, type_: str) -> None:
        self._rejects.labels(type_).inc()

    def internal_error(self) -> None:
        self._internal.inc()

    def converged(self, seconds: float) -> None:
        self._convergence.observe(seconds)

    def triggered(self, reason: str) -> None:
        self._triggers.labels(reason).inc()

    # -- the API server

    def validated(self, resource: str, ok: bool, reason: str = "invalid_resource") -> None:
        """A resource (Istio's plural, ``virtualservices``) passed or failed validation."""
        if ok:
            self._valid.labels(resource).inc()
        else:
            self._invalid.labels(resource, reason).inc()

    def families(self) -> list[Family]:
        """The registry's series as exposition families, with Istio's names."""
        out: list[Family] = []
        for metric in self.registry.collect():
            samples: list[Sample] = []
            for s in metric.samples:
                if s.name.endswith("_created"):
                    continue
                name = s.name
                if metric.type == "counter" and name == metric.name + "_total":
                    name = metric.name
                labels = tuple((k, str(v)) for k, v in s.labels.items())
                samples.append(Sample(name, labels, float(s.value)))
            out.append(Family(metric.name, metric.type, metric.documentation, tuple(samples)))
        return out

    def exposition(self) -> str:
        return render(self.families())
