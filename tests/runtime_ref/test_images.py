"""Layers, whiteouts, copy-up, init layer, commit/diff/import and image management on rref."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
import uuid
from pathlib import Path

from conftest import Rref


def layer_tar_of(rref: Rref, image: str) -> tarfile.TarFile:
    """The top layer of `image`, as the tar the store keeps (its sha256 is the diff_id)."""
    diff_ids = json.loads(
        rref.out("inspect", "--type", "image", "-f", "{{json .RootFS.Layers}}", image)
    )
    path = Path(rref.root, "image", "layers", diff_ids[-1][7:], "layer.tar")
    data = path.read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == diff_ids[-1]
    return tarfile.open(fileobj=io.BytesIO(data))


def lower_dir(rref: Rref, cid: str) -> Path:
    lowers = rref.inspect(cid, "{{.GraphDriver.Data.LowerDir}}").split(":")
    return Path(lowers[-1])  # the busybox layer


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writes_copy_up_and_never_touch_the_lower_layer(rref: Rref) -> None:
    cid = rref.run_d(
        "busybox", "sh", "-c", "echo extra >> /etc/passwd; chmod 600 /etc/group; sleep 60"
    )
    rref("exec", cid, "true")
    low, upper = lower_dir(rref, cid), Path(rref.inspect(cid, "{{.GraphDriver.Data.UpperDir}}"))
    assert "extra" not in (low / "etc/passwd").read_text()  # OVL-01
    assert (upper / "etc/passwd").read_text().endswith("extra\n")  # OVL-04
    assert (upper / "etc/passwd").read_text().startswith((low / "etc/passwd").read_text())
    # OVL-05: a metadata-only change copies the file up too
    assert stat.S_IMODE((upper / "etc/group").stat().st_mode) == 0o600
    assert (upper / "etc/group").read_bytes() == (low / "etc/group").read_bytes()
    assert stat.S_IMODE((low / "etc/group").stat().st_mode) == 0o644


def test_delete_leaves_a_whiteout_and_rmdir_mkdir_makes_opaque(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sh", "-c", "rm /etc/group; rm -rf /home; mkdir /home; sleep 60")
    rref("exec", cid, "true")
    upper = Path(rref.inspect(cid, "{{.GraphDriver.Data.UpperDir}}"))
    st = os.lstat(upper / "etc/group")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)  # OVL-02
    assert os.getxattr(upper / "home", "trusted.overlay.opaque") == b"y"  # OVL-03
    out = rref.out("exec", cid, "sh", "-c", "cat /etc/group 2>&1; ls -A /home | wc -l")
    assert "No such file or directory" in out and out.strip().endswith("0")


def test_two_containers_of_one_image_are_isolated(rref: Rref) -> None:
    a = rref.run_d("busybox", "sh", "-c", "echo a > /tmp/mine; sleep 60")
    b = rref.run_d("busybox", "sleep", "60")
    rref("exec", a, "true")
    assert rref("exec", b, "cat", "/tmp/mine", check=False).returncode == 1  # OVL-06


def test_commit_is_an_oci_changeset(rref: Rref) -> None:
    n = rref.name()
    rref(
        "run",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "rm /etc/group; rm -rf /home; mkdir /home; touch /home/new; echo x > /added; "
        "echo y > /etc/hostname; echo 1.2.3.4 h >> /etc/hosts",
    )
    image = f"rref-t-{uuid.uuid4().hex[:8]}:c"
    rref("commit", n, image)
    tf = layer_tar_of(rref, image)
    names = tf.getnames()
    assert "etc/.wh.group" in names  # OVL-08: deletion as an empty .wh. file
    wh = tf.getmember("etc/.wh.group")
    assert wh.isreg() and wh.size == 0
    assert "home/.wh..wh..opq" in names and "home/new" in names
    assert not [m for m in tf.getmembers() if m.ischr() or m.isblk()]
    for m in tf.getmembers():
        assert not any(k.startswith("SCHILY.xattr.trusted.overlay") for k in m.pax_headers)
    # INIT-02/03: the per-container files never travel
    assert not {"etc/hostname", "etc/hosts", "etc/resolv.conf"} & set(names)
    out = rref.out(
        "run",
        "--rm",
        "--hostname",
        "fresh",
        image,
        "sh",
        "-c",
        "cat /added; cat /etc/hostname; grep -c 1.2.3.4 /etc/hosts; cat /etc/group 2>&1; ls /home",
    )
    assert out.split("\n")[:3] == ["x", "fresh", "0"]
    assert "No such file or directory" in out and out.strip().endswith("new")


def test_init_layer_files_exist_and_are_writable(rref: Rref) -> None:
    cid = rref.run_d("--hostname", "inity", "busybox", "sleep", "60")
    out = rref.out(
        "exec",
        cid,
        "sh",
        "-c",
        "cat /etc/hostname; grep -c localhost /etc/hosts; "
        "test -f /etc/resolv.conf && echo rc; "
        "echo '10.9.9.9 x' >> /etc/hosts && echo wrote",
    )
    assert out.split() == ["inity", "2", "rc", "wrote"]
    diff = rref.out("diff", cid)
    assert "/etc/hosts" not in diff and "/etc/hostname" not in diff
    hosts = Path(rref.inspect(cid, "{{.HostsPath}}")).read_text()
    assert "10.9.9.9 x" in hosts


def test_hardlinks_and_ownership_survive_commit(rref: Rref) -> None:
    n = rref.name()
    rref(
        "run",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "mkdir /data; echo hl > /data/a; ln /data/a /data/b; chown 1000:2000 /data/a; "
        "chmod 4755 /data/a",
    )
    image = f"rref-t-{uuid.uuid4().hex[:8]}:hl"
    rref("commit", n, image)
    out = rref.out("run", "--rm", image, "sh", "-c", "stat -c '%i %u %g %a %h' /data/a /data/b")
    a, b = out.strip().split("\n")
    assert a == b  # same inode: still one file with two names
    assert a.split()[1:] == ["1000", "2000", "4755", "2"]  # OVL-10


def test_renamed_lower_directory_commits_exactly(rref: Rref) -> None:
    n = rref.name()
    rref(
        "run",
        "--name",
        n,
        "busybox",
        "sh",
        "-c",
        "mkdir -p /srv/old/sub && echo deep > /srv/old/sub/f",
    )
    base = f"rref-t-{uuid.uuid4().hex[:8]}:base"
    rref("commit", n, base)
    m = rref.name()
    out = rref.out(
        "run", "--name", m, base, "sh", "-c", "mv /srv/old /srv/new && echo moved; ls /srv"
    )
    assert "moved" in out  # busybox mv falls back to copy + delete on EXDEV (OVL-07)
    image = f"rref-t-{uuid.uuid4().hex[:8]}:mv"
    rref("commit", m, image)
    out = rref.out("run", "--rm", image, "sh", "-c", "ls /srv; cat /srv/new/sub/f")
    assert out.split() == ["new", "deep"]


def test_volume_data_stays_out_of_diff_and_commit(rref: Rref, tmp_path: Path) -> None:
    n = rref.name()
    rref(
        "run",
        "--name",
        n,
        "-v",
        f"{tmp_path}:/data",
        "busybox",
        "sh",
        "-c",
        "echo secret > /data/v; echo kept > /kept",
    )
    assert (tmp_path / "v").read_text() == "secret\n"
    diff = rref.out("diff", n).split("\n")
    assert "A /kept" in diff and not any(d.startswith(("A /data/", "C /data/")) for d in diff)
    image = f"rref-t-{uuid.uuid4().hex[:8]}:v"
    rref("commit", n, image)
    names = layer_tar_of(rref, image).getnames()
    assert "kept" in names
    assert not [x for x in names if x.startswith("data/")]  # VOL-02 (no placeholder either)
    assert "data" not in names


def test_commit_of_paused_container_keeps_it_paused(rref: Rref) -> None:
    cid = rref.run_d("busybox", "sh", "-c", "echo p > /p; sleep 60")
    rref("exec", cid, "true")
    rref("pause", cid)
    rref("commit", cid, f"rref-t-{uuid.uuid4().hex[:8]}:p")
    assert rref.inspect(cid, "{{.State.Status}}") == "paused"
    rref("unpause", cid)


def test_commit_changes_and_message(rref: Rref) -> None:
    n = rref.name()
    rref("run", "--name", n, "busybox", "sh", "-c", "echo hello > /msg")
    image = f"rref-t-{uuid.uuid4().hex[:8]}:ch"
    rref(
        "commit",
        "-m",
        "with changes",
        "-c",
        'CMD ["cat", "/msg"]',
        "-c",
        "ENV A=1",
        "-c",
        "WORKDIR /tmp",
        "-c",
        "LABEL k=v",
        "-c",
        "EXPOSE 80",
        n,
        image,
    )
    assert rref.out("run", "--rm", image) == "hello\n"
    assert rref.out("run", "--rm", image, "sh", "-c", "echo $A; pwd") == "1\n/tmp\n"
    cfg = json.loads(rref.out("inspect", "--type", "image", "-f", "{{json .Config}}", image))
    assert cfg["Labels"] == {"k": "v"} and "80/tcp" in cfg["ExposedPorts"]
    hist = rref.out("history", image)
    assert "with changes" in hist.split("\n")[1]
    p = rref("commit", "-c", "FROB x", n, image, check=False)
    assert p.returncode == 125 and "invalid change" in p.stderr


def _tar_bytes(entries: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """(name, file content or None for a dir, linkname) -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, content, link in entries:
            ti = tarfile.TarInfo(name)
            if link:
                ti.type, ti.linkname = tarfile.SYMTYPE, link.decode()
                tf.addfile(ti)
            elif content is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            else:
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def test_import_converts_whiteouts_and_runs(rref: Rref, tmp_path: Path) -> None:
    busybox = Path("/bin/busybox").read_bytes()
    tar = tmp_path / "rootfs.tar"
    tar.write_bytes(
        _tar_bytes(
            [
                ("bin", None, b""),
                ("bin/busybox", busybox, b""),
                ("bin/sh", None, b"busybox"),
                ("etc", None, b""),
                ("etc/.wh.gone", b"", b""),
                ("etc/motd", b"hi\n", b""),
            ]
        )
    )
    os.chmod(tar, 0o644)
    image = f"rref-t-{uuid.uuid4().hex[:8]}:imp"
    iid = rref.out("import", "-c", 'CMD ["/bin/sh"]', str(tar), image).strip()
    assert iid.startswith("sha256:")
    layer = Path(
        rref.root,
        "image",
        "layers",
        json.loads(rref.out("inspect", "--type", "image", "-f", "{{json .RootFS.Layers}}", image))[
            0
        ][7:],
        "diff",
    )
    st = os.lstat(layer / "etc/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0  # OVL-09: .wh. back to a whiteout
    os.chmod(layer / "bin/busybox", 0o755)
    assert rref.out("run", "--rm", image, "/bin/busybox", "cat", "/etc/motd") == "hi\n"


def test_tag_rmi_and_prune(fresh_rref: Rref) -> None:
    r = fresh_rref
    n = r.name()
    r("run", "--name", n, "busybox", "touch", "/x")
    iid = r.out("commit", n, "rref-t-one:a").strip()
    r("tag", "rref-t-one:a", "rref-t-two:b")
    assert r.out("rmi", "rref-t-two:b").strip() == "Untagged: rref-t-two:b"
    # an image in use by a (stopped) container needs -f, and then only loses its name
    c = r.name()
    r("create", "--name", c, "rref-t-one:a", "true")
    p = r("rmi", "rref-t-one:a", check=False)
    assert p.returncode == 1 and "must be forced" in p.stderr
    r("rm", c)
    out = r.out("rmi", "rref-t-one:a")
    assert f"Deleted: {iid}" in out
    assert iid[7:19] not in r.out("images", "-q", "-a")
    # dangling images go with image prune
    r("commit", n)
    assert len(r.out("images", "-q", "-f", "dangling=true").split()) == 1
    assert "deleted: sha256:" in r.out("image", "prune")
    assert r.out("images", "-q", "-f", "dangling=true") == ""
    df = r.out("system", "df")
    assert df.split("\n")[0].split()[:3] == ["TYPE", "TOTAL", "ACTIVE"]
    assert "Containers" in df and "Build Cache" in df
    out = r.out("system", "prune", "-a")
    assert "Deleted Container" in out and r.out("ps", "-aq") == ""
