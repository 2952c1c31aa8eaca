"""The local pod runtime's primitives: pods as network namespaces on a bridge.

- :mod:`.network`    bridge, pod namespaces, veths, addresses, routes, host rules, cleanup
- :mod:`.capture`    istio-init style iptables capture inside a sidecar pod (15001/15006)
- :mod:`.service_lb` kube-proxy style VIP load balancing inside pods without a sidecar
- :mod:`.hosts`      per-pod ``/etc/hosts`` and ``/etc/resolv.conf`` (service names)
- :mod:`.users`      the proxy and app system users
- :mod:`.process`    processes inside a pod as a given user, and stopping them fully
- :mod:`.commands`   running the system tools, :class:`PlatformError`

Each module has a pure part (names, command lines, rule scripts, file contents) tested without
root, and a thin I/O part that needs root on Linux.
"""
