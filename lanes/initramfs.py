"""The guest's initramfs: busybox, the kernel's modules and an /init that mounts the host.

Written as a newc cpio archive by this module (the format is 110 bytes of hex header a
file; no cpio package needed). /init loads the modules, mounts the host's root read-only
over 9p, gives the guest its own proc, sys, dev, tmpfs and a cgroup2-only
/sys/fs/cgroup, then switches root into the host's tree to run the lane's script.
"""

from __future__ import annotations

import os
import stat

#: 9p mount tags the guest mounts (qemu -virtfs mount_tag=...)
ROOT_TAG, OUT_TAG, REPO_TAG = "hostroot", "out", "repo"
#: where the lane's read-write share appears inside the guest
GUEST_OUT = "/run/conform-lane"

INIT = r"""#!/bin/busybox sh
# conform lane guest init: mount the host read-only, run the lane, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
say() { echo "conform-lane: $*" >/dev/console; }
for m in $(cat /modules/load-order); do
  insmod "/modules/$m" || say "insmod $m failed"
done
P9="trans=virtio,version=9p2000.L,msize=512000"
R=/newroot
mkdir -p $R
mount -t 9p -o "$P9,ro,cache=loose" @ROOT@ $R || { say "cannot mount the host root"; poweroff -f; }
mount -t proc proc $R/proc
mount -t sysfs sys $R/sys
mount -t devtmpfs dev $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs shm $R/dev/shm
for d in /tmp /run /var/tmp /root; do mount -t tmpfs -o mode=1777 tmp "$R$d"; done
mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup || say "cannot mount cgroup2"
mkdir -p "$R@OUT@"
mount -t 9p -o "$P9,cache=none" @OUTTAG@ "$R@OUT@" \
  || { say "cannot mount the results share"; poweroff -f; }
REPO="$(cat /lane/repo)"
if ! [ -e "$R$REPO/.git" ] && ! [ -e "$R$REPO/pyproject.toml" ]; then
  mkdir -p "$R$REPO"
  mount -t 9p -o "$P9,ro,cache=loose" @REPOTAG@ "$R$REPO" || say "cannot mount the checkout"
fi
say "guest up: $(cut -d' ' -f1 /proc/uptime)s"
# switch_root, not chroot: in a chroot the kernel refuses new user namespaces (EPERM)
exec switch_root $R /bin/busybox sh -c '
  sh "@OUT@/guest.sh" >"@OUT@/guest.log" 2>&1
  echo $? >"@OUT@/rc"
  sync
  echo "conform-lane: guest done: rc $(cat @OUT@/rc)" >/dev/console
  umount "@OUT@"
  /bin/busybox poweroff -f'
"""


def init_script() -> str:
    return (
        INIT.replace("@ROOT@", ROOT_TAG)
        .replace("@OUTTAG@", OUT_TAG)
        .replace("@REPOTAG@", REPO_TAG)
        .replace("@OUT@", GUEST_OUT)
    )


class Cpio:
    """A newc ("070701") cpio archive, the format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.ino = 1

    def _entry(
        self, name: str, mode: int, body: bytes = b"", rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(body), 0, 0, *rdev, len(encoded), 0)
        self.data += b"070701" + b"".join(b"%08X" % v for v in fields) + encoded
        self._pad()
        self.data += body
        self._pad()
        self.ino += 1

    def _pad(self) -> None:
        self.data += b"\0" * (-len(self.data) % 4)

    def directory(self, name: str) -> None:
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name: str, body: bytes, mode: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | mode, body)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def close(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self.data)


def build(busybox: str, modules: tuple[str, ...], repo: str) -> bytes:
    """The initramfs image: /init, /bin/busybox, /modules/*.ko with their load order."""
    arc = Cpio()
    for d in ("bin", "dev", "proc", "sys", "newroot", "modules", "lane"):
        arc.directory(d)
    with open(busybox, "rb") as f:
        arc.file("bin/busybox", f.read(), 0o755)
    arc.symlink("bin/sh", "busybox")
    arc.chardev("dev/console", 5, 1)  # the kernel opens it for /init before devtmpfs is up
    names = []
    for path in modules:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            arc.file(f"modules/{name}", f.read())
        names.append(name)
    arc.file("modules/load-order", ("\n".join(names) + "\n").encode())
    arc.file("lane/repo", repo.encode())
    arc.file("init", init_script().encode(), 0o755)
    return arc.close()
