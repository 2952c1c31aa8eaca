#!/usr/bin/env bash
# `make demo`: the whole local mesh with Bookinfo behind the ingress gateway.
#
#   pilotfish install --set profile=demo  ->  label default for injection  ->  apply Bookinfo,
#   its gateway and destination rules  ->  wait until every pod is ready  ->  print the product page URL.
#
# Safe to re-run: a running mesh is reused and applying the same files changes nothing.
# Needs root (pods are network namespaces with iptables capture). Environment:
#   PILOTFISH_DATA_DIR   data directory (default ~/.pilotfish/data; state beside it)
#   PILOTFISH_GATEWAY    address the ingress gateway binds (default 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=".venv/bin/python"
DATA_DIR="${PILOTFISH_DATA_DIR:-$HOME/.pilotfish/data}"
GATEWAY_BIND="${PILOTFISH_GATEWAY:-127.0.0.1}"

pf() { "$PY" -P -m pilotfish.cli.main "$@"; }

if [ "$(id -u)" -ne 0 ]; then
  echo "make demo: pods need root (network namespaces, iptables): run \`sudo make demo\`" >&2
  exit 1
fi

start=$(date +%s.%N)
# Istio's demo profile (access logs on, every request traced, Prometheus, the trace collector,
# the dashboard, the egress gateway) as the installed operator: its mesh config is the
# installed one, so no other IstioOperator overlays it. A running mesh is reconciled (parts
# already running are kept); one that is half up (or crashed) is cleaned up first.
echo "==> pilotfish install --set profile=demo -y"
pf install --set profile=demo -y --data-dir "$DATA_DIR" --gateway-bind "$GATEWAY_BIND"

echo "==> labelling namespace default for sidecar injection"
pf label namespace default istio-injection=enabled --overwrite
echo "==> applying Bookinfo"
pf apply -f samples/bookinfo/platform/bookinfo.yaml
pf apply -f samples/bookinfo/networking/bookinfo-gateway.yaml
pf apply -f samples/bookinfo/networking/destination-rule-all.yaml

echo "==> waiting for the Bookinfo pods"
# Ready when all 6+ pods are; a pod that reports why it cannot run (CrashLoopBackOff, a config
# error) for 10 seconds stops the wait at once, with the reason, instead of waiting it out.
ready_check() {
  pf get pods -n default -o json 2>/dev/null | "$PY" scripts/pod_check.py 6
}
ready=""
last=""
failing_since=""
for _ in $(seq 1 600); do
  set +e
  out=$(ready_check)
  code=$?
  set -e
  if [ $code -eq 0 ]; then ready=yes; break; fi
  now_count=$(printf '%s\n' "$out" | head -1)
  if [ -n "$now_count" ] && [ "$now_count" != "$last" ]; then
    echo "    $now_count pods ready"
    last="$now_count"
  fi
  if [ $code -eq 3 ]; then
    failing_since="${failing_since:-$(date +%s)}"
    if [ $(( $(date +%s) - failing_since )) -ge 10 ]; then
      echo "Bookinfo pods cannot start:" >&2
      printf '%s\n' "$out" | tail -n +2 >&2
      pf get pods -n default >&2 || true
      echo "More: pilotfish describe pod POD; pilotfish get events; pilotfish logs POD -c istio-proxy" >&2
      exit 1
    fi
  else
    failing_since=""
  fi
  sleep 0.2
done
if [ -z "$ready" ]; then
  echo "Bookinfo pods are not ready after 2 minutes:" >&2
  pf get pods -n default >&2 || true
  echo "Logs: pilotfish logs POD [-c istio-proxy]; state in $(dirname "$DATA_DIR")/state" >&2
  exit 1
fi
pf get pods -n default -o wide

HOST="$GATEWAY_BIND"; [ "$HOST" = "0.0.0.0" ] && HOST=127.0.0.1
URL="http://$HOST:8080/productpage"
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$URL" 2>/dev/null && break
  sleep 0.1
done
# How to call the CLI in the hints: the console script if it is on PATH.
PF_HINT="pilotfish"; command -v pilotfish >/dev/null 2>&1 || PF_HINT=".venv/bin/pilotfish"
elapsed=$(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $start }")
title=$(curl -fsS "$URL" 2>/dev/null | grep -o '<title>[^<]*' | sed 's/<title>//' || true)

cat <<MSG

Bookinfo is up in ${elapsed}s (${title:-product page not answering yet}).

  Product page:  $URL      (reload it: the reviews alternate between no, black and red stars)
  Dashboard:     $PF_HINT dashboard   (the live graph with mTLS locks and latencies, metrics,
                 traces; --browser=false prints a one-time sign-in link)

Try next (the request-routing and traffic-shifting steps of Istio's tutorials):
  $PF_HINT apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml          # no stars
  $PF_HINT apply -f samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml # sign in as jason: black stars
  $PF_HINT apply -f samples/bookinfo/networking/virtual-service-reviews-50-v3.yaml   # half red stars
  $PF_HINT apply -f samples/bookinfo/networking/virtual-service-reviews-v3.yaml      # all red stars
  $PF_HINT get pods -o wide ; $PF_HINT proxy-status
  $PF_HINT logs <productpage pod> -c istio-proxy                                   # access logs
  curl -s 'http://127.0.0.1:16686/api/traces?service=productpage.default&limit=1'  # a trace
  $PF_HINT exec <productpage pod> -- curl -s http://reviews:9080/reviews/0
  $PF_HINT down                                                                      # stop and clean up
MSG
