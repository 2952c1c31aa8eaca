"""The web dashboard: the live service graph, metrics panels, traces, config and wizards.

:mod:`graph` (pure) builds the graph from Istio's standard metrics, :mod:`config` (pure) the
Config page's data, :mod:`wizards` (pure) the resources the wizards write, :mod:`sessions`
who may sign in; :mod:`app` is the web server the control plane runs (``server.py`` wires it).
The browser app is TypeScript under ``web/``, built into ``static/`` by ``make install``.
"""
