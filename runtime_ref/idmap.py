"""User-namespace id maps and remapped copies of image layers.

With a user namespace, container root is an unprivileged host uid, so a
layer owned by host root would look like `nobody` inside. rref keeps one
copy of each layer per id map, with every owner shifted into the map (what
docker's --userns-remap does), cached under image/remapped/<map key>/.
Chosen over idmapped mounts because the copy works on every kernel that can
mount overlayfs inside a user namespace, and costs once per (layer, map).
"""

from __future__ import annotations

import itertools
import os
import stat

from .errors import UsageError

OVERFLOW_ID = 65534


def parse_map(text: str) -> dict[str, int]:
    """`CONTAINER:HOST:SIZE` (podman's --uidmap form) -> an OCI LinuxIDMapping."""
    parts = text.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in parts) or int(parts[2]) == 0:
        raise UsageError(f"invalid id mapping {text!r}: want CONTAINER_ID:HOST_ID:SIZE")
    c, h, n = (int(p) for p in parts)
    if c + n > 2**32 - 1 or h + n > 2**32 - 1:
        raise UsageError(f"invalid id mapping {text!r}: range beyond 2^32-1")
    return {"containerID": c, "hostID": h, "size": n}


def check_overlaps(maps: list[dict[str, int]], what: str) -> None:
    spans = sorted((m["containerID"], m["containerID"] + m["size"]) for m in maps)
    hosts = sorted((m["hostID"], m["hostID"] + m["size"]) for m in maps)
    for seq, side in ((spans, "container"), (hosts, "host")):
        for (_, end), (start, _) in itertools.pairwise(seq):
            if start < end:
                raise UsageError(f"invalid {what}: overlapping {side} id ranges")


def subordinate(user: str, path: str) -> dict[str, int]:
    """The first /etc/subuid or /etc/subgid range of `user` as a map of container root."""
    try:
        with open(path) as f:
            for line in f:
                name, _, rest = line.strip().partition(":")
                start, _, count = rest.partition(":")
                if name == user and start.isdigit() and count.isdigit():
                    return {"containerID": 0, "hostID": int(start), "size": int(count)}
    except OSError:
        pass
    raise UsageError(f"no subordinate ids for user {user!r} in {path}")


def to_host(cid: int, maps: list[dict[str, int]]) -> int:
    for m in maps:
        if m["containerID"] <= cid < m["containerID"] + m["size"]:
            return m["hostID"] + cid - m["containerID"]
    return OVERFLOW_ID


def map_key(uidmap: list[dict[str, int]], gidmap: list[dict[str, int]]) -> str:
    import hashlib  # only for a user namespace's layer copy (start-up cost otherwise)

    from .launch import id_map_text

    raw = (id_map_text(uidmap) + "|" + id_map_text(gidmap)).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def remap_tree(
    src: str, dst: str, uidmap: list[dict[str, int]], gidmap: list[dict[str, int]]
) -> None:
    """Copy `src` to `dst` (not existing) shifting owners; hard links, modes, times kept."""
    links: dict[tuple[int, int], str] = {}
    os.mkdir(dst)
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        out_dir = dst if rel == "." else os.path.join(dst, rel)
        for name in dirnames + filenames:
            s, d = os.path.join(dirpath, name), os.path.join(out_dir, name)
            st = os.lstat(s)
            key = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and key in links:
                os.link(links[key], d)
                continue
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(d)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(s), d)
            elif stat.S_ISREG(st.st_mode):
                with open(s, "rb") as fi, open(d, "wb") as fo:
                    while chunk := fi.read(1 << 20):
                        fo.write(chunk)
            else:
                os.mknod(d, st.st_mode, st.st_rdev)
            os.lchown(d, to_host(st.st_uid, uidmap), to_host(st.st_gid, gidmap))
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(d, stat.S_IMODE(st.st_mode))
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
            if st.st_nlink > 1:
                links[key] = d
    top = os.lstat(src)
    os.lchown(dst, to_host(top.st_uid, uidmap), to_host(top.st_gid, gidmap))
    os.chmod(dst, stat.S_IMODE(top.st_mode))
