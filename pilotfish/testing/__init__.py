"""Tools for the tests and the benchmarks, shipped with the package so both can import them.

Nothing in the product imports this package: ``ads_client`` is an ADS client that subscribes
and ACKs the way Envoy does, to drive the xDS server without an Envoy.
"""
