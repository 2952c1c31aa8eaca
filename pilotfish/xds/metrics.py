"""What the xDS server reports about itself, for the control plane's ``/metrics``.

The server calls an :class:`XdsMetrics`; the composition root passes one that records
Istio's pilot series (see :mod:`pilotfish.telemetry.pilot`). The default records nothing.
``type`` arguments are Istio's lower-case short names (``cds``, ``eds``, ``lds``, ``rds``,
``sds``).
"""

from __future__ import annotations

from typing import Protocol

from pilotfish.xds.resources import short_name

__all__ = ["NO_METRICS", "XdsMetrics", "metric_type"]


def metric_type(type_url: str) -> str:
    """``type.googleapis.com/envoy.config.cluster.v3.Cluster`` -> ``cds``."""
    return short_name(type_url).lower()


class XdsMetrics(Protocol):
    def pushed(self, type_: str) -> None:
        """A response of this type was written to a proxy."""

    def sent_resources(self, type_: str, count: int) -> None:
        """A response of this type carrying ``count`` resources was written to a proxy."""

    def send_error(self, type_: str) -> None:
        """Writing a response of this type failed."""

    def rejected(self, type_: str) -> None:
        """A proxy NACKed a response of this type."""

    def internal_error(self) -> None:
        """Generating or handling failed inside the server."""

    def converged(self, seconds: float) -> None:
        """A proxy has all of a push, this long after the change that caused it."""

    def triggered(self, reason: str) -> None:
        """A push was asked for (``config``, ``endpoint``, ...)."""


class _NoMetrics:
    def pushed(self, type_: str) -> None:
        return None

    def sent_resources(self, type_: str, count: int) -> None:
        return None

    def send_error(self, type_: str) -> None:
        return None

    def rejected(self, type_: str) -> None:
        return None

    def internal_error(self) -> None:
        return None

    def converged(self, seconds: float) -> None:
        return None

    def triggered(self, reason: str) -> None:
        return None


NO_METRICS: XdsMetrics = _NoMetrics()
