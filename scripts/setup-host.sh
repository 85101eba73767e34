#!/usr/bin/env bash
# Prepare this host for container-conformance: system packages (only when
# missing), tracefs, and a .venv built from the system Python so that the
# Debian bcc bindings stay importable. Idempotent; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3-venv python3-bpfcc python3-seccomp busybox-static runc iproute2 uidmap podman docker-registry)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  # no package may start a service here (docker-registry ships one listening on :5000):
  # the tests start what they need on loopback and stop it again
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# Debian's chromium renders the report in tests/reports/test_browser.py (headless). Optional:
# Ubuntu ships it only as a snap; without it that test skips and says why.
if ! command -v chromium >/dev/null 2>&1 && apt-cache show chromium >/dev/null 2>&1; then
  echo "setup: installing chromium (for the report's browser test)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    >/dev/null 2>&1 || echo "setup: chromium could not be installed: the browser test will skip"
fi

# qemu and busybox-static for the pure cgroup v2 lane (make test-v2; tests/lanes boot it).
bash scripts/setup-lane.sh

# tracefs for the probes (harmless when already mounted or unavailable).
if [ -d /sys/kernel/tracing ] && [ ! -e /sys/kernel/tracing/events ]; then
  mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || true
fi

# Kernel headers for bcc (the probes). When none match the running kernel, Debian's
# 6.1 cloud headers are linked in: bcc compiles with them, and the probes only use
# tracepoint arguments, helpers and uapi structs, so 6.1 layouts never matter.
kbuild="/lib/modules/$(uname -r)/build"
if [ ! -e "$kbuild/include" ] && command -v apt-get >/dev/null 2>&1; then
  if ! compgen -G '/usr/src/linux-headers-6.1.0-*-cloud-amd64' >/dev/null; then
    echo "setup: no kernel headers for $(uname -r): installing linux-headers-cloud-amd64 (6.1) for the bcc probes"
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-headers-cloud-amd64 >/dev/null \
      || echo "setup: could not install kernel headers: the bcc probes will be unavailable"
  fi
  cloud=$(compgen -G '/usr/src/linux-headers-6.1.0-*-cloud-amd64' | sort -V | tail -1 || true)
  if [ -n "$cloud" ] && [ -d "${cloud%-cloud-amd64}-common" ]; then
    mkdir -p "/lib/modules/$(uname -r)"
    ln -sfn "$cloud" "$kbuild"
    ln -sfn "${cloud%-cloud-amd64}-common" "/lib/modules/$(uname -r)/source"
    echo "setup: linked $kbuild -> $cloud (source -> ${cloud%-cloud-amd64}-common) for bcc"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
stamp=.venv/.installed
if [ ! -e "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  # compat mode: a plain path entry, no import hook on every `rref` start
  .venv/bin/python -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
  touch "$stamp"
fi
# rref and rref-oci start as `python -I -S` with site's sys.path recorded (runtime_ref/launcher.py)
.venv/bin/python -m runtime_ref.launcher .venv/bin >/dev/null
# byte-compile once here: start-up time matters and PYTHONDONTWRITEBYTECODE may be set
.venv/bin/python -m compileall -q runtime_ref conformance probes reports >/dev/null
# The pinned Allure 3 CLI that renders the HTML report (reports/package-lock.json).
if command -v npm >/dev/null 2>&1; then
  if [ ! -x reports/node_modules/.bin/allure ] || \
     [ reports/package-lock.json -nt reports/node_modules/.package-lock.json ]; then
    (cd reports && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
else
  echo "setup: npm not found: the HTML report cannot be rendered (results are still written)"
fi
echo "setup: ok ($(.venv/bin/python --version))"
