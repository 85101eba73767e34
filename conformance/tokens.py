"""The `requires` vocabulary: host capability tokens plus adapter capability tokens.

Why: a test states what it needs (`@pytest.mark.requires("cgroup:memory", "exec")`); a token
nobody defines is an error at collection, never a silent skip (runc's bats `requires`).
Host tokens come from `hostinfo.KNOWN_TOKENS`; adapter tokens are defined here.
"""

from __future__ import annotations

from conformance.hostinfo import KNOWN_TOKENS as HOST_TOKENS

#: Tokens an adapter may declare in `capabilities()`, with what they promise.
ADAPTER_TOKENS: dict[str, str] = {
    "detach": "start() runs a container in the background and pid() finds its init",
    "exec": "exec() runs a process inside a running container",
    "pause": "pause()/unpause() freeze and thaw every process of a container",
    "stop": "the runtime's own stop: SIGTERM, then SIGKILL after a timeout",
    "logs": "the runtime keeps a finished container's stdout and stderr (logs())",
    "engine": "docker-like engine: images, default hostname = short id, managed /etc/hostname",
    "commit": "commit() turns a container's writable layer into an image",
    "diff": "diff() lists a container's changes against its image",
    "upperdir": "upperdir() gives the host path of the container's writable overlay layer",
    "lowerdirs": "lowerdirs() gives the host paths of the image layers below a container's "
    "overlay, top first (no per-container init layer)",
    "layer-tar": "layer_tar() gives an image's top layer as the uncompressed OCI changeset tar "
    "whose sha256 is its diff_id",
    "import": "import_rootfs() makes an image from a root filesystem tar (applied as a layer)",
    "load": "load() adds the images of an OCI image layout tar to the image store",
    "events": "events() lists the runtime's container events of a time window",
    "volumes": "bind mounts of host directories (ContainerSpec.volumes)",
    "named-volumes": "engine-managed named volumes: volume_create()/volume_remove(), and "
    "Volume(source=NAME) in a ContainerSpec",
    "seccomp-profile": "a seccomp profile file of the test's own (ContainerSpec.seccomp_profile)",
    "bundle": "the runtime consumes an OCI bundle (config.json written by the suite)",
    "userns-map": "uid/gid maps (ContainerSpec.uid_map/gid_map) in a new user namespace",
    "network:bridge": "bridge networking on a bridge and private subnet of the session's own "
    "(bridge())",
    "network:host": "the host's network namespace (network='host')",
    "seccomp": "the runtime applies a default seccomp profile",
    "cgroup-limits": "memory/cpu/pids/cpuset limits and the blkio weight of ContainerSpec are "
    "applied",
}

KNOWN: frozenset[str] = frozenset(HOST_TOKENS | ADAPTER_TOKENS.keys())


def unknown(tokens: list[str] | tuple[str, ...]) -> list[str]:
    """The tokens of ``tokens`` that nobody defines (an error for the caller to raise)."""
    return [t for t in tokens if t not in KNOWN]


def missing(
    required: tuple[str, ...] | list[str],
    host: set[str] | frozenset[str],
    adapter: set[str] | frozenset[str],
) -> list[str]:
    """Required tokens not provided: host tokens by the host, adapter tokens by the adapter."""
    out = []
    for token in required:
        have = adapter if token in ADAPTER_TOKENS else host
        if token not in have:
            out.append(token)
    return out
