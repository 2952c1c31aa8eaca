"""Fixtures for telemetry integration tests."""

from tests.integration.harness import control_plane, control_plane_factory, mesh

__all__ = ["control_plane", "control_plane_factory", "mesh"]
