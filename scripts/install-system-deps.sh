#!/usr/bin/env bash
# Installs the Debian packages Pilotfish needs, only when something is missing.
# Pods are network namespaces with iptables capture (iproute2, iptables); the demo and tests
# use curl; the virtualenv needs python3-venv on a stock Debian; `pilotfish up` runs Debian's
# prometheus for the mesh's metrics (no daemon starts without systemd; the mesh runs its own);
# the PostgreSQL store's tests start throwaway clusters with Debian's postgresql binaries;
# the dashboard's browser app is built with node/npm (esbuild, TypeScript) and its end-to-end
# test drives Debian's chromium; the egress tests' external host answers DNS with dnsmasq.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v pkill >/dev/null 2>&1 || need+=(procps)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v prometheus >/dev/null 2>&1 || need+=(prometheus)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
"${PYTHON:-python3}" -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "pilotfish: missing system packages: ${need[*]} (install them as root with apt-get)" >&2
  exit 1
fi
echo "pilotfish: installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
