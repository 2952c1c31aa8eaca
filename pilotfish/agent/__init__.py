"""The sidecar agent behind ``pilotfish proxy``: everything that runs next to one Envoy.

- ``settings``: :class:`AgentSettings`, the one object the CLI (or the pod runtime) fills;
- ``bootstrap``: :func:`render_bootstrap` (pure) and :func:`write_bootstrap`;
- ``supervisor``: :class:`EnvoySupervisor` runs, restarts, drains and stops the real Envoy;
- ``admin``: Envoy admin client and the readiness/drain decisions drawn from it;
- ``health``: the agent's HTTP server (15020): ``/healthz/ready``, ``/stats/prometheus``;
- ``app``: the workload process in explicit mode and the environment it gets;
- ``process``: child processes that die with the agent;
- ``agent``: :func:`run_agent`, the lifetime of it all;
- ``envoy_binary``: where the Envoy executable is.

Submodules are imported explicitly (``from pilotfish.agent.agent import run_agent``) so that
importing one part does not pull in the others' dependencies.
"""
