"""Pilotfish: a service mesh that accepts Istio's configuration unchanged and drives Envoy."""

__version__ = "0.1.0"

__all__ = ["__version__"]
