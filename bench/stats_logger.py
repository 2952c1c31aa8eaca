"""What Istio's metrics cost Envoy per request, counted in instructions (callgrind), side by
side in one run: a figure that does not move with the other work on a shared machine.

Run from the repository root (needs ``valgrind``: ``apt-get install -y valgrind``)::

    .venv/bin/python bench/stats_logger.py              # 500 requests per config
    .venv/bin/python bench/stats_logger.py --quick      # 100 requests per config

One backend Envoy answers every request itself (200, 2 bytes). In front of it, one proxy Envoy
per config (listener -> the edge filters -> router -> one cluster with the endpoint and cluster
metadata the control plane sends) runs under ``valgrind --tool=callgrind``, instrumentation off
until it has served 200 requests (so every stat exists); then it counts the instructions Envoy
executes for N more keep-alive requests. Configs, for both reporters:

- ``off``: what telemetry off runs: no stats logger, no edge filter (the client's; the
  server's peer edge stays on, as it does with telemetry off);
- ``none``: no stats logger (the edge filters stay);
- ``per-label``: Istio's four HTTP metrics with one Envoy tag per label, each label's own
  metadata lookup (the form before the labels were packed);
- ``packed``: the four metrics as generated now (:func:`pilotfish.translate.telemetry.pack_tags`:
  one packed tag per metric, one lookup per group);
- ``access-log``: no metrics, Istio's text access log to ``/dev/null``;
- ``packed + access-log``: both, what telemetry "on" runs;
- ``packed no-counter``: the four metrics less ``istio_requests_total`` (the lever of serving
  it from the duration histogram's ``_count``).

Instructions are not time (a lookup that misses the cache costs more than its count says), but
they are what the config asks Envoy to do, counted exactly. No exit code depends on the figures.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchlib import Processes, free_port, ratio, table
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2 as h2m
from google.protobuf import json_format

from pilotfish.agent.envoy_binary import envoy_binary
from pilotfish.api.meshconfig import DEFAULT_ACCESS_LOG_FORMAT
from pilotfish.api.peer import HISTOGRAM_BUCKETS, PEER_FIELDS
from pilotfish.model.telemetry import MetricOverride
from pilotfish.translate import telemetry as T
from pilotfish.translate.common import pack

SERVICE = ("reviews.default.svc.cluster.local", "reviews", "default")
ENDPOINT = {
    "workload": "reviews-v1", "namespace": "default", "app": "reviews", "version": "v1",
    "canonical_service": "reviews", "canonical_revision": "v1", "cluster": "Kubernetes",
}  # fmt: skip
CALLER = ("productpage-v1", "productpage", "v1", "productpage", "v1", "Kubernetes")
HCM = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)
ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def _addr(port: int) -> dict[str, Any]:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def _json(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message)


def _stats_logger(
    tags: list[tuple[str, str]], packed: bool, without: str | None = None
) -> dict[str, Any]:
    overrides = [] if without is None else [MetricOverride(without, "CLIENT_AND_SERVER", True)]
    log = T.http_metrics_log(tags, overrides)
    assert log is not None
    if not packed:  # rebuild the same metrics with one tag per label
        from envoy.extensions.access_loggers.stats.v3 import stats_pb2

        config = stats_pb2.Config()
        log.typed_config.Unpack(config)
        for stat in [*config.counters, *config.histograms]:
            del stat.stat.tags[:]
            stat.stat.tags.extend(stats_pb2.Config.Tag(name=k, value_format=v) for k, v in tags)
        log.typed_config.CopyFrom(pack(config))
    return _json(log)


def _access_log() -> dict[str, Any]:
    fmt = DEFAULT_ACCESS_LOG_FORMAT
    return {
        "name": T.FILE_LOGGER,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": "/dev/null",
            "log_format": {
                "text_format_source": {"inline_string": fmt if fmt.endswith("\n") else fmt + "\n"}
            },
        },
    }


def _old_peer_filter() -> dict[str, Any]:
    """The inbound edge before packing: one rule per peer header, each into its own key."""
    config = T.peer_metadata_filter()
    del config.request_rules[:]
    for key, header in T.PEER_HEADERS.items():
        rule = config.request_rules.add(header=header, remove=True)
        rule.on_header_present.metadata_namespace = T.PEER_METADATA
        rule.on_header_present.key = key
        rule.on_header_present.type = h2m.Config.STRING
    new = T.peer_metadata_filter()
    config.request_rules.extend(
        r for r in new.request_rules if r.header not in (T.PEER_HEADER, *T.PEER_HEADERS.values())
    )
    return {"name": T.HEADER_TO_METADATA, "typed_config": _json(pack(config))}


def configs() -> dict[str, tuple[str, list[dict[str, Any]], list[dict[str, Any]]]]:
    """name -> (reporter, HTTP filters before the router, access logs). The server's tag list
    names each of the caller's labels by its own metadata key, what the per-label form read."""
    client_edge = [
        {"name": T.HEADER_TO_METADATA, "typed_config": _json(pack(T.request_metadata_filter()))}
    ]
    server_edge = [
        {"name": T.HEADER_TO_METADATA, "typed_config": _json(pack(T.peer_metadata_filter()))}
    ]
    client, server = T.client_http_tags(), T.server_http_tags(SERVICE, mtls=True)
    return {
        "client off": ("source", [], []),
        "client none": ("source", client_edge, []),
        "client per-label": ("source", client_edge, [_stats_logger(client, packed=False)]),
        "client packed": ("source", client_edge, [_stats_logger(client, packed=True)]),
        "client access-log": ("source", client_edge, [_access_log()]),
        "client packed + access-log": ("source", client_edge,
                                       [_stats_logger(client, packed=True), _access_log()]),
        "client packed no-counter": ("source", client_edge,
                                      [_stats_logger(client, True, "REQUEST_COUNT")]),
        "server none": ("destination", server_edge, []),
        "server per-label": ("destination", [_old_peer_filter()],
                             [_stats_logger(server, packed=False)]),
        "server packed": ("destination", server_edge, [_stats_logger(server, packed=True)]),
        "server access-log": ("destination", server_edge, [_access_log()]),
        "server packed + access-log": ("destination", server_edge,
                                       [_stats_logger(server, packed=True), _access_log()]),
        "server packed no-counter": ("destination", server_edge,
                                      [_stats_logger(server, True, "REQUEST_COUNT")]),
    }  # fmt: skip


def proxy_bootstrap(
    listen: int, backend: int, admin: int, filters: list[dict[str, Any]], logs: list[Any]
) -> dict[str, Any]:
    endpoint_md = {**ENDPOINT, "labels": ";".join(ENDPOINT[k] for k in ENDPOINT)}
    svc_md = {"service": SERVICE[0], "name": SERVICE[1], "namespace": SERVICE[2]}
    svc_md["service_labels"] = ";".join(SERVICE)
    cluster = {
        "name": "upstream",
        "type": "STATIC",
        "connect_timeout": "1s",
        "metadata": {"filter_metadata": {"istio": svc_md}},
        "load_assignment": {
            "cluster_name": "upstream",
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {"address": _addr(backend)},
                            "metadata": {"filter_metadata": {"istio": endpoint_md}},
                        }
                    ]
                }
            ],
        },
    }
    hcm = {
        "@type": HCM,
        "stat_prefix": "bench",
        "codec_type": "HTTP1",
        "access_log": logs,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "upstream"}}],
                }
            ]
        },
        "http_filters": [*filters, ROUTER],
    }
    listener = {
        "name": "proxy",
        "address": _addr(listen),
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager",
                          "typed_config": hcm}]}
        ],
    }  # fmt: skip
    return {
        "admin": {"address": _addr(admin)},
        "stats_config": {
            "use_all_default_tags": True,
            "histogram_bucket_settings": [
                {"match": {"prefix": name}, "buckets": list(b)}
                for name, b in HISTOGRAM_BUCKETS.items()
            ],
        },
        "stats_flush_interval": "5s",
        "static_resources": {"listeners": [listener], "clusters": [cluster]},
    }


def backend_bootstrap(listen: int, admin: int) -> dict[str, Any]:
    route = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
    }
    hcm = {
        "@type": HCM,
        "stat_prefix": "backend",
        "codec_type": "HTTP1",
        "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [route]}]},
        "http_filters": [ROUTER],
    }
    return {
        "admin": {"address": _addr(admin)},
        "static_resources": {
            "listeners": [
                {
                    "name": "backend",
                    "address": _addr(listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }


def send(port: int, count: int, reporter: str) -> None:
    headers = {"Host": "bench:9080"}
    if reporter == "destination":  # what the caller's sidecar sends, both forms
        headers[T.PEER_HEADER] = ";".join(CALLER)
        for key, value in zip(PEER_FIELDS, CALLER, strict=True):
            headers[T.PEER_HEADERS[key]] = value
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        for _ in range(count):
            conn.request("GET", "/", headers=headers)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise SystemExit(f"proxy answered {response.status}")
    finally:
        conn.close()


def instructions(out_dir: Path, pid: int) -> int:
    total = 0
    for path in out_dir.glob(f"callgrind.{pid}*"):
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total


def measure(procs: Processes, name: str, boot: dict[str, Any], reporter: str, count: int) -> float:
    path = procs.workdir / f"{name.replace(' ', '-')}.json"
    path.write_text(json.dumps(boot))
    out = procs.workdir / name.replace(" ", "-")
    out.mkdir()
    cmd = [
        "valgrind", "--tool=callgrind", "--instr-atstart=no",
        f"--callgrind-out-file={out}/callgrind.%p",
        str(envoy_binary()), "-c", str(path), "--concurrency", "1", "--use-dynamic-base-id",
        "--log-level", "error",
    ]  # fmt: skip
    proc = procs.start(cmd, f"{path.stem}.log")
    port = boot["static_resources"]["listeners"][0]["address"]["socket_address"]["port_value"]
    deadline = time.monotonic() + 300
    while True:
        try:
            send(port, 1, reporter)
            break
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(
                    f"{name}: the proxy did not come up (see {path.stem}.log)"
                ) from None
            time.sleep(0.5)
    send(port, 200, reporter)
    subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True,
                   capture_output=True)  # fmt: skip
    send(port, count, reporter)
    subprocess.run(["callgrind_control", "--dump=bench", str(proc.pid)], check=True,
                   capture_output=True)  # fmt: skip
    procs.stop(proc)
    return instructions(out, proc.pid) / count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="100 requests per config.")
    parser.add_argument("--configs", help="Comma-separated config names (default: all).")
    parser.add_argument("--workdir", type=Path, help="Keep logs here (default: a temp dir).")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("valgrind is not installed: apt-get install -y valgrind", file=sys.stderr)
        return 2
    count = 100 if args.quick else args.requests
    chosen = configs()
    if args.configs:
        chosen = {k: v for k, v in chosen.items() if k in args.configs.split(",")}
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pilotfish-stats-logger-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, float] = {}
    with Processes(workdir) as procs:
        backend = free_port()
        boot = backend_bootstrap(backend, free_port())
        (workdir / "backend.json").write_text(json.dumps(boot))
        cmd = [str(envoy_binary()), "-c", str(workdir / "backend.json"), "--concurrency", "1",
               "--use-dynamic-base-id", "--log-level", "error"]  # fmt: skip
        procs.start(cmd, "backend.log")
        for name, (reporter, filters, logs) in chosen.items():
            boot = proxy_bootstrap(free_port(), backend, free_port(), filters, logs)
            results[name] = measure(procs, name, boot, reporter, count)
            print(f"{name}: {results[name]:,.0f} instructions per request", flush=True)
    rows = []
    for name, value in results.items():
        side = name.split()[0]
        base = results.get(f"{side} none")
        extra = "" if base is None else f"{value - base:+,.0f}"
        rows.append((name, f"{value:,.0f}", extra, "" if base is None else ratio(value, base)))
    print(f"\nProxy Envoy instructions per request ({count} requests per config, callgrind):")
    print(table(["config", "instructions / request", "over none", "/ none"], rows))
    print(f"work dir: {workdir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
