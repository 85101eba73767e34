#!/usr/bin/env bash
# What the pure cgroup v2 lane needs beyond `make setup`: qemu (TCG; no KVM needed) and
# busybox-static for the guest's initramfs. The kernel itself is fetched by
# `conform lane v2` (apt-get download, cached in /var/cache/conform-lane). Idempotent.
set -euo pipefail
missing=()
for p in qemu-system-x86 busybox-static; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-lane: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
