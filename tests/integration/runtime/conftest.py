"""Pod-runtime fixtures shared with tests/integration/platform (private bridge per test)."""

from tests.integration.platform.conftest import _requires_pods, mesh_users, pod_network

__all__ = ["_requires_pods", "mesh_users", "pod_network"]
