"""`rref save` / `rref load` against real podman, and hostile archives.

rref's OCI layout tar must load and run in podman, and podman's images (OCI and
docker archives, with a whiteout in an upper layer) must load and run in rref.
Broken archives fail with one line and leave the store as it was.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator

import conftest
import pytest
from conftest import RREF, Rref, snapshot

PODMAN = "/usr/bin/podman"
PODMAN_RUN = ["--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]


def image_cmd(
    r: Rref, *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """save/load/pull/push through the `rref` CLI (a longer timeout than the default)."""
    return r(*args, check=check, timeout=timeout)


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [PODMAN, *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc


def one_line_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    """Archive refusals exit 125 (bad archive) or 1 (failed request)."""
    conftest.one_line_error(p, (125, 1), needle)


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="conform-oci-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


needs_podman = pytest.mark.skipif(not os.path.exists(PODMAN), reason="podman is not installed")


# -- rref -> podman ---------------------------------------------------------------


@needs_podman
def test_rref_save_loads_and_runs_in_podman(rref: Rref, workdir: str) -> None:
    name = f"conform-interop-{uuid.uuid4().hex[:10]}:t"
    full = f"docker.io/library/{name}"
    rref("tag", "busybox", name)
    out = os.path.join(workdir, "conform-save.tar")
    try:
        image_cmd(rref, "save", "-o", out, name)
        assert not [f for f in os.listdir(workdir) if f != "conform-save.tar"]  # no temp left
        with tarfile.open(out) as tf:
            layout = json.load(tf.extractfile("oci-layout"))  # type: ignore[arg-type]
            index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        assert layout == {"imageLayoutVersion": "1.0.0"}
        (desc,) = index["manifests"]
        assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert desc["annotations"]["org.opencontainers.image.ref.name"] == full
        assert desc["annotations"]["io.containerd.image.name"] == full
        loaded = podman("load", "-i", out)
        assert full in loaded.stdout, loaded.stdout
        p = podman("run", "--rm", *PODMAN_RUN, full, "sh", "-c", "echo ok; ls /bin/busybox")
        assert p.stdout.split() == ["ok", "/bin/busybox"], p.stdout
        # podman keeps the config byte for byte: the image ids agree
        pid = podman("image", "inspect", "-f", "{{.Id}}", full).stdout.strip()
        assert rref.inspect(name, "{{.Id}}").removeprefix("sha256:") == pid
    finally:
        podman("rmi", "-f", full, check=False)
        rref("rmi", name, check=False)


def archive_config_digest(path: str) -> str:
    """The config digest of the one image in an OCI or docker archive."""
    with tarfile.open(path) as tf:
        names = tf.getnames()
        if "index.json" in names:
            index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
            digest = index["manifests"][0]["digest"]
            manifest = json.load(tf.extractfile(f"blobs/sha256/{digest[7:]}"))  # type: ignore[arg-type]
            return str(manifest["config"]["digest"])
        (entry,) = json.load(tf.extractfile("manifest.json"))  # type: ignore[arg-type]
        return "sha256:" + hashlib.sha256(tf.extractfile(entry["Config"]).read()).hexdigest()  # type: ignore[union-attr]


def archive_whiteouts(path: str) -> list[str]:
    """The whiteout entries of every layer tar (plain or gzip) inside an archive."""
    found = []
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if not m.isfile() or m.name.endswith(".json"):
                continue
            try:
                with tarfile.open(fileobj=tf.extractfile(m), mode="r:*") as layer:
                    found += [n for n in layer.getnames() if "/.wh." in "/" + n]
            except tarfile.TarError:
                continue
    return found


# -- podman -> rref ---------------------------------------------------------------


@pytest.fixture(scope="module")
def podman_image() -> Iterator[str]:
    """localhost/conform-interop-<id>:t: an imported busybox root plus a committed
    layer that adds /hello and deletes /etc/conform-lower (a whiteout)."""
    if not os.path.exists(PODMAN):
        pytest.skip("podman is not installed")
    from runtime_ref.busybox import BUSYBOX_CANDIDATES, make_busybox_tree

    busybox = next(p for p in BUSYBOX_CANDIDATES if os.path.isfile(p))
    tag = f"conform-interop-{uuid.uuid4().hex[:10]}"
    base, image, ctr = f"localhost/{tag}:base", f"localhost/{tag}:t", f"{tag}-c"
    tmp = tempfile.mkdtemp(prefix="conform-rootfs-")
    try:
        tree = os.path.join(tmp, "root")
        make_busybox_tree(busybox, tree)
        for f, text in (("conform-lower", "lower\n"), ("conform-keep", "kept\n")):
            with open(os.path.join(tree, "etc", f), "w") as fh:
                fh.write(text)
        rootfs = os.path.join(tmp, "conform-rootfs.tar")
        with tarfile.open(rootfs, "w") as tf:
            tf.add(tree, ".")
        podman("import", "--change", 'CMD ["sh"]', rootfs, base)
        podman(
            "run",
            "--name",
            ctr,
            *PODMAN_RUN,
            base,
            "sh",
            "-c",
            "echo hello > /hello && rm /etc/conform-lower",
        )
        podman("commit", "-q", ctr, image)
        yield image
    finally:
        podman("rm", "-f", ctr, check=False)
        podman("rmi", "-f", image, base, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


@needs_podman
@pytest.mark.parametrize("fmt", ["oci-archive", "docker-archive"])
def test_podman_save_loads_and_runs_in_rref(
    fresh_rref: Rref, podman_image: str, workdir: str, fmt: str
) -> None:
    archive = os.path.join(workdir, f"conform-{fmt}.tar")
    podman("save", "--format", fmt, "-o", archive, podman_image)
    assert any(n.endswith(".wh.conform-lower") for n in archive_whiteouts(archive))
    p = image_cmd(fresh_rref, "load", "-i", archive)
    short = podman_image.removeprefix("localhost/")
    assert f"Loaded image: {short}" in p.stdout.splitlines(), p.stdout
    assert fresh_rref.out("run", "--rm", short, "cat", "/hello") == "hello\n"
    # the whiteout of the upper layer hides the lower layer's file
    p = fresh_rref(
        "run",
        "--rm",
        short,
        "sh",
        "-c",
        "cat /etc/conform-keep; test -e /etc/conform-lower && echo present; ls /etc",
    )
    assert p.stdout.splitlines()[0] == "kept", p.stdout
    assert "present" not in p.stdout and "conform-lower" not in p.stdout, p.stdout
    assert ".wh." not in p.stdout
    # the config is stored byte for byte: the image id is the archive's config digest
    assert fresh_rref.inspect(short, "{{.Id}}") == archive_config_digest(archive)
    # loading the same archive again is a no-op that still names the image
    again = image_cmd(fresh_rref, "load", "-i", archive)
    assert f"Loaded image: {short}" in again.stdout


# -- rref -> rref -----------------------------------------------------------------


@pytest.fixture(scope="module")
def good_archive(state_root: str) -> Iterator[bytes]:
    """`rref save busybox` from the shared root, as bytes to corrupt."""
    r = Rref(state_root)
    d = tempfile.mkdtemp(prefix="conform-oci-")
    try:
        out = os.path.join(d, "conform-good.tar")
        image_cmd(r, "save", "-o", out, "busybox")
        with open(out, "rb") as f:
            yield f.read()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_round_trip_tar_and_directory(
    rref: Rref, fresh_rref: Rref, good_archive: bytes, workdir: str
) -> None:
    path = os.path.join(workdir, "conform-good.tar")
    with open(path, "wb") as f:
        f.write(good_archive)
    p = image_cmd(fresh_rref, "load", "-i", path)
    assert "Loaded image: busybox:latest" in p.stdout.splitlines(), p.stdout
    assert fresh_rref.inspect("busybox", "{{.Id}}") == rref.inspect("busybox", "{{.Id}}")
    assert fresh_rref.out("run", "--rm", "busybox", "echo", "round-trip") == "round-trip\n"
    # an OCI layout directory loads too
    layout = os.path.join(workdir, "layout")
    with tarfile.open(path) as tf:
        tf.extractall(layout)  # our own archive, just written by rref save
    fresh_rref("rmi", "busybox")
    p = image_cmd(fresh_rref, "load", "-i", layout)
    assert "Loaded image: busybox:latest" in p.stdout.splitlines(), p.stdout
    assert fresh_rref.inspect("busybox", "{{.Id}}") == rref.inspect("busybox", "{{.Id}}")


def rewrite(src: bytes, change: object) -> bytes:
    """A copy of a tar with `change(info, data) -> [(info, data), ...]` applied per entry."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(src)) as tin, tarfile.open(fileobj=out, mode="w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            for info, body in change(m, data):  # type: ignore[operator]
                if body is not None:
                    info.size = len(body)
                tout.addfile(info, io.BytesIO(body) if body is not None else None)
    return out.getvalue()


def _layer_blob(src: bytes) -> str:
    with tarfile.open(fileobj=io.BytesIO(src)) as tf:
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
        digest = index["manifests"][0]["digest"]
        manifest = json.load(tf.extractfile(f"blobs/sha256/{digest[7:]}"))  # type: ignore[arg-type]
    return "blobs/sha256/" + manifest["layers"][0]["digest"][7:]


def _flip_layer(m: tarfile.TarInfo, data: bytes | None, layer: str) -> list:
    if m.name == layer and data:
        mid = len(data) // 2
        data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1 :]
    return [(m, data)]


def _extra(
    m: tarfile.TarInfo, data: bytes | None, extra: tarfile.TarInfo, body: bytes | None
) -> list:
    return [(m, data)] + ([(extra, body)] if m.name == "index.json" else [])


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


BAD = {
    "layer-digest-mismatch": (
        lambda src: lambda m, d: _flip_layer(m, d, _layer_blob(src)),
        "digest mismatch",
    ),
    "traversal": (
        lambda src: lambda m, d: _extra(m, d, tarfile.TarInfo("../x"), b"x"),
        "unsafe path",
    ),
    "absolute-path": (
        lambda src: lambda m, d: _extra(m, d, tarfile.TarInfo("/etc/x"), b"x"),
        "unsafe path",
    ),
    "missing-blob": (
        lambda src: lambda m, d: [] if m.name == _layer_blob(src) else [(m, d)],
        "missing blob",
    ),
    "bad-json": (
        lambda src: lambda m, d: [(m, b"{not json" if m.name == "index.json" else d)],
        "bad JSON",
    ),
    "link-escape": (
        lambda src: (
            lambda m, d: (
                [(_symlink(m.name, "../../../etc/passwd"), None)]
                if m.name == _layer_blob(src)
                else [(m, d)]
            )
        ),
        "unsafe link",
    ),
    "unknown-entry": (
        lambda src: lambda m, d: _extra(m, d, tarfile.TarInfo("blobs/x/y/z"), b"x"),
        "unexpected entry",
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_archive_is_refused(
    fresh_rref: Rref, good_archive: bytes, workdir: str, case: str
) -> None:
    make, needle = BAD[case]
    path = os.path.join(workdir, f"conform-{case}.tar")
    with open(path, "wb") as f:
        f.write(rewrite(good_archive, make(good_archive)))
    before, images = snapshot(fresh_rref.root), fresh_rref.out("images")
    one_line_error(image_cmd(fresh_rref, "load", "-i", path, check=False), needle)
    assert snapshot(fresh_rref.root) == before
    assert fresh_rref.out("images") == images
    assert "busybox" not in images


def test_load_of_missing_or_non_archive_file(fresh_rref: Rref, workdir: str) -> None:
    one_line_error(
        image_cmd(fresh_rref, "load", "-i", os.path.join(workdir, "nope.tar"), check=False),
        "no such file",
    )
    junk = os.path.join(workdir, "conform-junk.tar")
    with open(junk, "wb") as f:
        f.write(os.urandom(4096))
    one_line_error(
        image_cmd(fresh_rref, "load", "-i", junk, check=False), "cannot read image archive"
    )
    assert snapshot(fresh_rref.root) == {}


def _parts(src: bytes) -> tuple[dict[str, bytes], dict]:
    """(blobs by digest, manifest document) of a one-image archive."""
    with tarfile.open(fileobj=io.BytesIO(src)) as tf:
        blobs = {
            "sha256:" + m.name.rsplit("/", 1)[1]: tf.extractfile(m).read()  # type: ignore[union-attr]
            for m in tf.getmembers()
            if m.isfile() and m.name.startswith("blobs/")
        }
        index = json.load(tf.extractfile("index.json"))  # type: ignore[arg-type]
    return blobs, json.loads(blobs[index["manifests"][0]["digest"]])


def _layout(blobs: dict[str, bytes], manifests: list[dict]) -> bytes:
    out = io.BytesIO()
    files = {f"blobs/sha256/{d[7:]}": b for d, b in blobs.items()}
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()
    with tarfile.open(fileobj=out, mode="w") as tf:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    return out.getvalue()


def _blob(blobs: dict[str, bytes], body: bytes, media_type: str, **extra: object) -> dict:
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    blobs[digest] = body
    return {"mediaType": media_type, "digest": digest, "size": len(body), **extra}


def test_nested_index_loads_this_platform(
    fresh_rref: Rref, good_archive: bytes, workdir: str
) -> None:
    from runtime_ref.oci_layout import oci_arch

    blobs, manifest = _parts(good_archive)
    m = _blob(blobs, json.dumps(manifest).encode(), manifest["mediaType"])
    other = {"os": "linux", "architecture": "conformarch"}
    nested = _blob(
        blobs,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {**m, "platform": other},
                    {**m, "platform": {"os": "linux", "architecture": oci_arch()}},
                ],
            }
        ).encode(),
        "application/vnd.oci.image.index.v1+json",
        annotations={"org.opencontainers.image.ref.name": "localhost/conform-nested:t"},
    )
    path = os.path.join(workdir, "conform-nested.tar")
    with open(path, "wb") as f:
        f.write(_layout(blobs, [nested]))
    p = image_cmd(fresh_rref, "load", "-i", path)
    assert "Loaded image: conform-nested:t" in p.stdout.splitlines(), p.stdout
    assert fresh_rref.inspect("conform-nested:t", "{{.Id}}") == manifest["config"]["digest"]
    # an index with no image for this machine is refused
    nested_other = _blob(
        blobs,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{**m, "platform": other}],
            }
        ).encode(),
        "application/vnd.oci.image.index.v1+json",
    )
    with open(path, "wb") as f:
        f.write(_layout(blobs, [nested_other]))
    one_line_error(
        image_cmd(fresh_rref, "load", "-i", path, check=False), f"no image for linux/{oci_arch()}"
    )


def test_zstd_layer_is_refused(fresh_rref: Rref, good_archive: bytes, workdir: str) -> None:
    blobs, manifest = _parts(good_archive)
    zstd = b"\x28\xb5\x2f\xfd" + os.urandom(64)
    layer = _blob(blobs, zstd, "application/vnd.oci.image.layer.v1.tar+zstd")
    manifest["layers"] = [layer]
    m = _blob(blobs, json.dumps(manifest).encode(), manifest["mediaType"])
    path = os.path.join(workdir, "conform-zstd.tar")
    with open(path, "wb") as f:
        f.write(_layout(blobs, [m]))
    one_line_error(image_cmd(fresh_rref, "load", "-i", path, check=False), "zstd")
    assert snapshot(fresh_rref.root) == {}


def test_save_to_stdout_and_load_from_stdin(rref: Rref, fresh_rref: Rref) -> None:
    prefix = [RREF]
    tar = subprocess.run(
        [*prefix, "--root", rref.root, "save", "busybox"],
        check=True,
        capture_output=True,
        timeout=120,
    ).stdout
    p = subprocess.run(
        [*prefix, "--root", fresh_rref.root, "load"], input=tar, capture_output=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    assert b"Loaded image: busybox:latest" in p.stdout
    assert fresh_rref.inspect("busybox", "{{.Id}}") == rref.inspect("busybox", "{{.Id}}")
