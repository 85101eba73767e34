"""`rref push` / `rref pull` against a real registry (Debian's docker-registry) on
127.0.0.1, and the loopback-only rule: other registries are refused before any
socket is opened."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator

import conftest
import pytest
from conftest import Rref

REGISTRY = "/usr/bin/docker-registry"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
# urllib without the environment's proxies: the test talks to 127.0.0.1 only
DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def image_cmd(
    r: Rref, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """save/load/pull/push through the `rref` CLI (a longer timeout than the default)."""
    return r(*args, check=check, timeout=timeout)


def one_line_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    """A registry request that fails exits 1 with one line."""
    conftest.one_line_error(p, 1, needle)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: SIGTERM when the test process dies, even by SIGKILL."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """`docker-registry serve` on 127.0.0.1:<free port>, storage in a temp dir;
    yields "127.0.0.1:PORT" and kills the registry at the end."""
    if not os.path.exists(REGISTRY):
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    tmp = tempfile.mkdtemp(prefix="conform-registry-")
    port = _free_port()
    config = os.path.join(tmp, "config.yml")
    with open(config, "w") as f:
        f.write(f"""version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {tmp}/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
""")
    log = open(os.path.join(tmp, "registry.log"), "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [REGISTRY, "serve", config],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                with open(os.path.join(tmp, "registry.log")) as f:
                    pytest.fail(f"docker-registry exited {proc.returncode}: {f.read()[-2000:]}")
            try:
                with DIRECT.open(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("docker-registry did not answer GET /v2/ within 30s")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


def _repo() -> str:
    return f"conform/t{uuid.uuid4().hex[:10]}"


def test_push_then_pull_into_a_fresh_root_and_run(
    registry: str, rref: Rref, fresh_rref: Rref
) -> None:
    ref = f"{registry}/conform/busybox:t1"
    rref("tag", "busybox", ref)
    p = image_cmd(rref, "push", ref)
    assert "t1: digest: sha256:" in p.stdout, p.stdout
    image_id = rref.inspect(ref, "{{.Id}}")
    rref("rmi", ref)  # the local tag goes; the registry still has it
    assert ref not in rref.out("images")
    p = image_cmd(fresh_rref, "pull", ref)
    assert "Pull complete" in p.stdout and p.stdout.splitlines()[-1] == ref, p.stdout
    assert fresh_rref.inspect(ref, "{{.Id}}") == image_id
    assert fresh_rref.out("run", "--rm", ref, "echo", "pulled") == "pulled\n"
    # again: nothing to fetch
    p = image_cmd(fresh_rref, "pull", ref)
    assert "Already exists" in p.stdout and "Image is up to date" in p.stdout, p.stdout


def test_push_then_pull_keeps_config_bytes_and_diff_ids(
    registry: str, rref: Rref, fresh_rref: Rref
) -> None:
    from runtime_ref.images import ImageStore

    store = ImageStore(rref.root)
    base = store.resolve("busybox")
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as tf:
        body = b"second layer\n"
        info = tarfile.TarInfo("conform-layer")
        info.size, info.mode = len(body), 0o644
        tf.addfile(info, io.BytesIO(body))
    tar.seek(0)
    diff_id = store.add_layer_tar(tar)
    cfg = json.loads(store.config_bytes(base.id))
    cfg["config"]["Env"] = [*cfg["config"]["Env"], "CONFORM=from-env"]
    cfg["config"]["Cmd"] = ["sh", "-c", "echo $CONFORM; cat /conform-layer"]
    cfg["rootfs"]["diff_ids"] = [*cfg["rootfs"]["diff_ids"], diff_id]
    raw = json.dumps(cfg, indent=3).encode()  # unusual formatting: must survive byte for byte
    repo = _repo()
    ref = f"{registry}/{repo}:v1"
    image_id = store.add_image(raw, ref)
    first = image_cmd(rref, "push", ref)
    again = image_cmd(rref, "push", ref)
    assert "Layer already exists" in again.stdout, again.stdout
    digest = first.stdout.split("digest: ")[1].split()[0]
    assert again.stdout.split("digest: ")[1].split()[0] == digest

    image_cmd(fresh_rref, "pull", ref)
    pulled = ImageStore(fresh_rref.root)
    assert pulled.resolve(ref).id == image_id
    assert pulled.config_bytes(image_id) == raw
    got = json.loads(pulled.config_bytes(image_id))
    assert got["rootfs"]["diff_ids"] == cfg["rootfs"]["diff_ids"]
    assert got["config"]["Env"] == cfg["config"]["Env"]
    assert got["config"]["Cmd"] == cfg["config"]["Cmd"]
    assert fresh_rref.out("run", "--rm", ref) == "from-env\nsecond layer\n"
    # and by digest: the same image, no tag made
    by_digest = image_cmd(fresh_rref, "pull", "-q", f"{registry}/{repo}@{digest}")
    assert by_digest.stdout.strip() == image_id


def test_pull_picks_this_platform_from_an_index(
    registry: str, rref: Rref, fresh_rref: Rref
) -> None:
    repo = _repo()
    ref = f"{registry}/{repo}:single"
    rref("tag", "busybox", ref)
    digest = image_cmd(rref, "push", "-q", ref).stdout.strip()
    get = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{digest}", headers={"Accept": OCI_MANIFEST}
    )
    with DIRECT.open(get, timeout=10) as r:
        size = len(r.read())
    from runtime_ref.oci_layout import oci_arch

    entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": size}
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {**entry, "platform": {"os": "linux", "architecture": "conformarch"}},
                {**entry, "platform": {"os": "linux", "architecture": oci_arch()}},
            ],
        }
    ).encode()
    req = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/multi",
        data=index,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
    )
    with DIRECT.open(req, timeout=10) as r:
        assert r.status == 201
    multi = f"{registry}/{repo}:multi"
    image_cmd(fresh_rref, "pull", multi)
    assert fresh_rref.inspect(multi, "{{.Id}}") == rref.inspect(ref, "{{.Id}}")
    assert fresh_rref.out("run", "--rm", multi, "echo", "indexed") == "indexed\n"
    rref("rmi", ref)


def test_pull_of_unknown_tag_or_repo_is_one_line(registry: str, fresh_rref: Rref) -> None:
    one_line_error(
        image_cmd(fresh_rref, "pull", f"{registry}/conform/busybox:nope", check=False),
        "manifest unknown",
    )
    one_line_error(
        image_cmd(fresh_rref, "pull", f"{registry}/conform/nosuchrepo:x", check=False),
        f"pull {registry}/conform/nosuchrepo:x: ",
    )
    assert fresh_rref.out("images").count("\n") <= 1  # only the header


def test_push_of_missing_local_image(registry: str, fresh_rref: Rref) -> None:
    one_line_error(
        image_cmd(fresh_rref, "push", f"{registry}/conform/absent:x", check=False),
        "does not exist locally",
    )


def test_unreachable_loopback_registry(fresh_rref: Rref) -> None:
    port = _free_port()  # nothing listens there
    one_line_error(
        image_cmd(fresh_rref, "pull", f"127.0.0.1:{port}/conform/x:y", check=False),
        "cannot reach registry",
    )


NON_LOOPBACK = [
    "registry.example:5000/x",
    "busybox",
    "docker.io/library/busybox:latest",
    "10.0.0.1:5000/x:y",
    "192.168.1.1/x",
    "[::2]:5000/x",
    "127.0.0.1.example.com:5000/x",
    "8.8.8.8:443/x",
]


@pytest.mark.parametrize("verb", ["pull", "push"])
def test_non_loopback_registry_is_refused(fresh_rref: Rref, verb: str) -> None:
    t0 = time.monotonic()
    p = image_cmd(fresh_rref, verb, "registry.example:5000/x", check=False)
    assert time.monotonic() - t0 < 10
    one_line_error(p, "rref only talks to registries on loopback here")


@pytest.mark.parametrize("ref", NON_LOOPBACK)
def test_refusal_opens_no_socket(monkeypatch: pytest.MonkeyPatch, ref: str) -> None:
    from runtime_ref import registry as reg
    from runtime_ref.errors import RrefError
    from runtime_ref.images import ImageStore

    def no_network(*a: object, **k: object) -> None:
        raise AssertionError(f"network use for {ref}")

    root = tempfile.mkdtemp(prefix="rref-test-noss-")
    try:
        monkeypatch.setattr(socket, "socket", no_network)
        monkeypatch.setattr(socket, "getaddrinfo", no_network)
        monkeypatch.setattr(socket, "create_connection", no_network)
        for fn in (reg.pull, reg.push):
            with pytest.raises(RrefError, match="only talks to registries on loopback"):
                fn(ImageStore(root), ref)
    finally:
        monkeypatch.undo()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.skipif(not os.path.exists("/usr/bin/podman"), reason="podman is not installed")
@pytest.mark.parametrize("fmt", ["v2s2", "oci"])
def test_pull_of_an_image_podman_pushed(
    registry: str, rref: Rref, fresh_rref: Rref, fmt: str
) -> None:
    """podman pushes docker schema2 (or OCI) manifests; rref pulls and runs them."""
    name = f"conform-push-{uuid.uuid4().hex[:10]}:t"
    local, remote = f"docker.io/library/{name}", f"{registry}/{_repo()}:{fmt}"
    rref("tag", "busybox", name)
    tmp = tempfile.mkdtemp(prefix="conform-podman-push-")
    podman = ["/usr/bin/podman"]
    try:
        archive = os.path.join(tmp, "conform.tar")
        image_cmd(rref, "save", "-o", archive, name)
        subprocess.run(
            [*podman, "load", "-q", "-i", archive], check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [
                *podman,
                "push",
                "-q",
                "--tls-verify=false",
                "--format",
                fmt,
                local,
                f"docker://{remote}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        p = image_cmd(fresh_rref, "pull", remote)
        assert p.stdout.splitlines()[-1] == remote, p.stdout
        assert fresh_rref.out("run", "--rm", remote, "echo", f"from-{fmt}") == f"from-{fmt}\n"
        # podman may rewrite the config on push; the layer content is what must survive
        got = fresh_rref.inspect(remote, "{{json .RootFS.Layers}}")
        assert got == rref.inspect(name, "{{json .RootFS.Layers}}")
    finally:
        subprocess.run([*podman, "rmi", "-f", local], capture_output=True, timeout=120)
        rref("rmi", name, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
