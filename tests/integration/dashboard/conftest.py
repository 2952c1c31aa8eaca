"""Fixtures for integration tests (real Envoy, real processes)."""

from tests.integration.harness import control_plane, control_plane_factory, mesh

__all__ = ["control_plane", "control_plane_factory", "mesh"]
