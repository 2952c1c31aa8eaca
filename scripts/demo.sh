#!/usr/bin/env bash
# `make demo`: bring a Pilotfish control plane up and load the sample configuration.
# Safe to re-run: an already running control plane is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
PF=".venv/bin/pilotfish"
HOME_DIR="${PILOTFISH_HOME:-$HOME/.pilotfish}"
DATA_DIR="$HOME_DIR/data"
LOG="$HOME_DIR/server.log"
PIDFILE="$HOME_DIR/server.pid"
mkdir -p "$HOME_DIR"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

if running; then
  echo "==> control plane already running (pid $(cat "$PIDFILE"))"
else
  echo "==> starting the control plane (logs: $LOG)"
  nohup "$PF" server --data-dir "$DATA_DIR" >>"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 100); do
    curl -fsS http://127.0.0.1:15014/healthz >/dev/null 2>&1 && break
    running || { echo "control plane failed to start:"; tail -20 "$LOG"; exit 1; }
    sleep 0.1
  done
fi

echo "==> applying the Bookinfo networking samples"
"$PF" apply -f samples/bookinfo/networking/bookinfo-gateway.yaml
"$PF" apply -f samples/bookinfo/networking/destination-rule-all.yaml
"$PF" apply -f samples/bookinfo/networking/virtual-service-all-v1.yaml
echo
"$PF" get gateways
echo
"$PF" get virtualservices
echo
"$PF" get destinationrules
cat <<MSG

Pilotfish control plane is up: API http://127.0.0.1:15014 (token and context in $HOME_DIR).
Try next:
  $PF apply -f samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml
  $PF get vs reviews -o yaml
  $PF validate -f samples/bookinfo/networking/
  $PF delete -f samples/bookinfo/networking/virtual-service-reviews-test-v2.yaml
Stop it with: kill \$(cat $PIDFILE)
MSG
