"""The local pod runtime's primitives: pods as network namespaces on a bridge.

- :mod:`.network`    bridge, pod namespaces, veths, addresses, routes, host rules, cleanup
- :mod:`.capture`    istio-init style iptables capture inside a sidecar pod (15001/15006)
- :mod:`.service_lb` kube-proxy style VIP load balancing inside pods without a sidecar
- :mod:`.hosts`      per-pod ``/etc/hosts`` and ``/etc/resolv.conf`` (service names)
- :mod:`.users`      the proxy and app system users
- :mod:`.process`    processes inside a pod as a given user, and stopping them fully
- :mod:`.commands`   running the system tools, :class:`PlatformError`
- :mod:`.nsprobe`    TCP/HTTP probes into a pod's namespace without starting a process

The runtime built on them:

- :mod:`.runtime_model` Deployments to Pod objects, statuses, VIP tables (pure)
- :mod:`.runtime_pod`   one running pod: network, sidecar, apps, readiness, stop order
- :mod:`.runtime`       the reconcile loop over the control plane's HTTP API
- :mod:`.runtime_main`  the ``pilotfish runtime`` process
- :mod:`.runtime_mesh`  ``pilotfish up``/``down``/``status``: server, runtime and gateway

Each module has a pure part (names, command lines, rule scripts, file contents) tested without
root, and a thin I/O part that needs root on Linux.
"""
