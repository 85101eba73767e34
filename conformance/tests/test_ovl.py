"""Layered filesystem (OVL-01..10): read-only lowers, whiteouts, opaque directories, copy-up,
commits as OCI changesets, applying layers safely, hard links and owners in commits.

Outside checks read the overlay's own directories on the host (upper dir, image layers,
layer tars); inside checks look through the container (/proc/<pid>/root or its shell).
"""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from conformance import facts, layertar
from conformance.adapters.base import ContainerSpec
from conformance.errors import RuntimeFailure, Unsupported
from conformance.layertar import directory, file, hardlink, symlink
from conformance.tests.support import ran, sh, started, token

#: A regular file and a directory with children that every base image has (the suite's
#: busybox tree and rref's busybox image alike): /usr holds the bin and sbin symlinks.
LOWER_FILE = "etc/group"
LOWER_DIR = "usr"
OPAQUE = ("trusted.overlay.opaque", "user.overlay.opaque")  # the second: userxattr mounts


def _kind(path: Path) -> str:
    """What a host path is, for messages."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "missing"
    if stat.S_ISCHR(st.st_mode):
        return f"char device {os.major(st.st_rdev)}/{os.minor(st.st_rdev)}"
    if stat.S_ISREG(st.st_mode):
        return f"regular file of {st.st_size} bytes, mode {stat.S_IMODE(st.st_mode):o}"
    return stat.filemode(st.st_mode)


def _opaque(path: Path) -> bytes | None:
    return next((v for n in OPAQUE if (v := facts.xattr(path, n)) is not None), None)


def _in_root(pid: int, path: str) -> Path:
    """A path of the container's merged filesystem, seen from the host."""
    return Path(f"/proc/{pid}/root/{path.lstrip('/')}")


def _lower_file(lowers: list[Path], rel: str) -> Path:
    """The topmost image layer that holds ``rel``."""
    for d in lowers:
        if os.path.lexists(d / rel):
            return d / rel
    raise RuntimeFailure(f"no image layer holds /{rel}: {[str(d) for d in lowers]}")


#: Every kind of write: append, chmod/chown, delete a file, delete and remake a directory,
#: rename a file, new files and hard links.
WRITES = (
    "echo conform-append >> /etc/group && chmod 600 /etc/group && chown 1:1 /etc/group && "
    "mv /etc/passwd /etc/conform-passwd && rm -rf /usr && mkdir /usr && "
    "echo new > /usr/conform-new && ln /usr/conform-new /usr/conform-link && "
    "mkdir -p /home/conform-d && : > /home/conform-d/f && rm -f /bin/vi"
)


@pytest.mark.behaviour("OVL-01")
@pytest.mark.requires("detach", "exec", "lowerdirs")
def test_writes_never_change_lower_layers(runtime, container):
    s = started(runtime, container, ContainerSpec())
    lowers = runtime.lowerdirs(s.container)
    assert lowers, "the runtime reports no image layer below the container"
    before = {d: facts.tree_state(d) for d in lowers}
    runtime.exec(s.container, sh(WRITES)).check(f"{runtime.name} exec (writes)")
    changed = []
    for d, old in before.items():
        new = facts.tree_state(d)
        changed += [f"{d}/{p}" for p in sorted(old.keys() | new.keys()) if old.get(p) != new.get(p)]
    assert not changed, f"container writes changed image layers: {changed[:20]}"


@pytest.mark.behaviour("OVL-02")
@pytest.mark.requires("detach", "upperdir")
def test_delete_leaves_a_whiteout(runtime, container):
    s = started(
        runtime,
        container,
        ContainerSpec(),
        prepare=f"rm /{LOWER_FILE} && stat /{LOWER_FILE} 2> /tmp/stat-err",
    )
    upper = runtime.upperdir(s.container)
    assert facts.is_whiteout(upper / LOWER_FILE), (
        f"after rm /{LOWER_FILE} the upper dir holds {_kind(upper / LOWER_FILE)}, "
        "want a whiteout (char device 0/0)"
    )
    err = facts.read_in_root(s.pid, "/tmp/stat-err") or ""
    assert "No such file or directory" in err, f"stat of the deleted file inside: {err!r}"
    assert not os.path.lexists(_in_root(s.pid, LOWER_FILE)), "the deleted file is still there"


@pytest.mark.behaviour("OVL-03")
@pytest.mark.requires("detach", "upperdir")
def test_rmdir_mkdir_makes_an_opaque_dir(runtime, container):
    s = started(
        runtime,
        container,
        ContainerSpec(),
        prepare=f"rm -rf /{LOWER_DIR} && mkdir /{LOWER_DIR} && ls -A /{LOWER_DIR} > /tmp/ls",
    )
    upper = runtime.upperdir(s.container) / LOWER_DIR
    assert _opaque(upper) == b"y", (
        f"upper /{LOWER_DIR} ({_kind(upper)}) has no trusted.overlay.opaque=y "
        f"(xattrs: {os.listxattr(upper) if upper.exists() else '-'})"
    )
    seen = facts.read_in_root(s.pid, "/tmp/ls")
    assert seen == "", f"the remade /{LOWER_DIR} shows lower children inside: {seen!r}"
    assert os.listdir(_in_root(s.pid, LOWER_DIR)) == [], "lower children visible from the host"


@pytest.mark.behaviour("OVL-04")
@pytest.mark.requires("detach", "upperdir", "lowerdirs")
def test_write_copies_up(runtime, container):
    mark = token()
    s = started(runtime, container, ContainerSpec(), prepare=f"echo {mark} >> /{LOWER_FILE}")
    lower = _lower_file(runtime.lowerdirs(s.container), LOWER_FILE).read_text()
    upper = runtime.upperdir(s.container) / LOWER_FILE
    assert upper.is_file(), f"upper {LOWER_FILE} is {_kind(upper)} after a write"
    assert upper.read_text() == lower + f"{mark}\n", (
        f"upper {LOWER_FILE} does not hold the lower content plus the write: "
        f"{upper.read_text()[-200:]!r}"
    )
    assert mark not in lower, "the write reached the image layer"


@pytest.mark.behaviour("OVL-05")
@pytest.mark.requires("detach", "upperdir", "lowerdirs")
def test_metadata_change_copies_up(runtime, container):
    s = started(
        runtime,
        container,
        ContainerSpec(),
        prepare="chmod 600 /etc/group && chown 1:1 /etc/passwd",
    )
    upper, lowers = runtime.upperdir(s.container), runtime.lowerdirs(s.container)
    group, passwd = os.lstat(upper / "etc/group"), os.lstat(upper / "etc/passwd")
    assert stat.S_ISREG(group.st_mode) and stat.S_IMODE(group.st_mode) == 0o600, (
        f"after chmod 600 the upper etc/group is {_kind(upper / 'etc/group')}"
    )
    assert (passwd.st_uid, passwd.st_gid) == (1, 1), (
        f"after chown 1:1 the upper etc/passwd is owned {passwd.st_uid}:{passwd.st_gid}"
    )
    low = os.lstat(_lower_file(lowers, "etc/group"))
    assert stat.S_IMODE(low.st_mode) != 0o600, "the chmod reached the image layer"


@pytest.mark.behaviour("OVL-06")
@pytest.mark.requires("detach")
def test_containers_do_not_share_writes(runtime, container):
    mark = token()
    a = started(
        runtime,
        container,
        ContainerSpec(),
        prepare=f"echo {mark} > /tmp/{mark}; echo {mark} >> /etc/group; rm /etc/passwd",
    )
    b = started(runtime, container, ContainerSpec())
    assert (facts.read_in_root(a.pid, f"/tmp/{mark}") or "").strip() == mark, "writer failed"
    assert facts.read_in_root(b.pid, f"/tmp/{mark}") is None, "a new file shows in the other"
    assert mark not in (facts.read_in_root(b.pid, "/etc/group") or ""), "an edit shows"
    assert facts.read_in_root(b.pid, "/etc/passwd"), "a deletion shows in the other container"


#: A listing of a tree that a commit must reproduce: type, mode, owner, size, links,
#: symlink target and content digest of every entry (no inode numbers, no times).
def _listing(top: str) -> str:
    return (
        f"(cd {top} && find . | sort | while read -r p; do "
        "stat -c 'e=%n %A %u:%g %s %h' \"$p\"; "
        '[ -L "$p" ] && echo "l=$p $(readlink "$p")"; '
        '[ -f "$p" ] && [ ! -L "$p" ] && echo "c=$p $(md5sum < "$p")"; done; true)'
    )


def _tree(res_stdout: str) -> list[str]:
    return [ln for ln in res_stdout.splitlines() if ln[:2] in ("e=", "l=", "c=")]


@pytest.mark.behaviour("OVL-07")
@pytest.mark.requires("detach", "upperdir")
def test_lower_dir_rename_is_exdev_or_redirect(runtime, container):
    """`mv` of a lower directory: rename(2) fails with EXDEV and busybox mv copies (the upper
    dir is a plain new directory), or redirect_dir records the move (trusted.overlay.redirect)
    and then a commit must reproduce the tree."""
    s = started(
        runtime,
        container,
        ContainerSpec(),
        prepare=f"mv /{LOWER_DIR} /conform-moved 2> /tmp/mv-err; {_listing('/conform-moved')} "
        "> /tmp/tree",
    )
    tree = _tree(facts.read_in_root(s.pid, "/tmp/tree") or "")
    err = (facts.read_in_root(s.pid, "/tmp/mv-err") or "").strip()
    assert not err and os.path.exists(_in_root(s.pid, "conform-moved/bin")), (
        f"mv of a lower directory did not complete inside: {err!r}"
    )
    assert not os.path.lexists(_in_root(s.pid, LOWER_DIR)), "the old name is still there"
    upper = runtime.upperdir(s.container)
    moved = upper / "conform-moved"
    redirect = facts.xattr(moved, "trusted.overlay.redirect")
    if redirect is None:
        assert facts.is_whiteout(upper / LOWER_DIR), (
            f"EXDEV copy: the old name should be a whiteout, is {_kind(upper / LOWER_DIR)}"
        )
        kinds = sorted(_kind(moved / n) for n in os.listdir(moved))
        assert len(kinds) == 2 and all(k.startswith("l") for k in kinds), (
            f"EXDEV copy: upper conform-moved should hold the copied symlinks, has {kinds}"
        )
        return
    if "commit" not in runtime.capabilities():
        raise Unsupported(f"commit (redirect_dir used: {redirect!r})")
    assert any(t.startswith("e=./bin ") for t in tree), f"the moved tree was not listed: {tree}"
    image = container.commit(s.container)
    res = ran(runtime, ContainerSpec(image=image, argv=sh(_listing("/conform-moved"))))
    assert _tree(res.stdout) == tree, "the commit of a redirected directory differs"


@pytest.mark.behaviour("OVL-07")
@pytest.mark.requires("detach", "commit")
def test_commit_reproduces_a_renamed_lower_dir(runtime, container):
    build = (
        "mkdir -p /conform-tree/sub/deep && echo one > /conform-tree/a && "
        "echo two > /conform-tree/sub/b && ln -s ../a /conform-tree/sub/ln && "
        "ln /conform-tree/a /conform-tree/sub/hard && chmod 640 /conform-tree/sub/b && "
        "chown 7:8 /conform-tree/sub/deep && : > /conform-tree/sub/deep/empty"
    )
    base = container.commit(started(runtime, container, ContainerSpec(), prepare=build).container)
    s = started(
        runtime,
        container,
        ContainerSpec(image=base),
        prepare=f"mv /conform-tree /conform-moved; {_listing('/conform-moved')} > /tmp/tree",
    )
    tree = _tree(facts.read_in_root(s.pid, "/tmp/tree") or "")
    assert any("deep/empty" in t for t in tree), f"the renamed tree is incomplete: {tree}"
    image = container.commit(s.container)
    res = ran(
        runtime,
        ContainerSpec(
            image=image,
            argv=sh(
                f"{_listing('/conform-moved')}; [ -e /conform-tree ] && echo old=present; true"
            ),
        ),
    )
    assert "old=present" not in res.stdout, "the committed image still has the old name"
    got = _tree(res.stdout)
    assert got == tree, f"the committed tree differs: {sorted(set(got) ^ set(tree))}"


def _opaque_commit(runtime, container) -> dict[str, layertar.Member]:
    """The committed layer of a container that deleted a lower file and replaced a lower dir."""
    s = started(
        runtime,
        container,
        ContainerSpec(),
        prepare=f"rm /{LOWER_FILE} && rm -rf /{LOWER_DIR} && mkdir /{LOWER_DIR} && "
        f"echo x > /{LOWER_DIR}/conform-f",
    )
    return layertar.members(runtime.layer_tar(container.commit(s.container)))


@pytest.mark.behaviour("OVL-08")
@pytest.mark.requires("detach", "commit", "layer-tar")
def test_commit_is_an_oci_changeset(runtime, container):
    members = _opaque_commit(runtime, container)
    wh = members.get("etc/.wh.group")
    assert wh is not None and wh.kind == "file" and wh.size == 0, (
        f"deletion of /{LOWER_FILE}: want an empty regular etc/.wh.group, got {wh}"
    )
    assert LOWER_FILE not in members, "the deleted file itself is in the layer"
    devices = [m.name for m in members.values() if m.kind in ("char", "block")]
    assert not devices, f"device nodes in the committed layer: {devices}"
    overlay = {m.name: x for m in members.values() for x in m.xattrs if ".overlay." in x}
    assert not overlay, f"overlay xattrs in the committed layer: {overlay}"


@pytest.mark.behaviour("OVL-11")
@pytest.mark.requires("detach", "commit", "layer-tar")
def test_commit_marks_opaque_dirs_explicitly(runtime, container):
    """image-spec: opaque whiteouts SHOULD be explicit (a consumer MUST accept both forms)."""
    members = _opaque_commit(runtime, container)
    opq = members.get(f"{LOWER_DIR}/.wh..wh..opq")
    assert opq is not None and opq.kind == "file" and opq.size == 0, (
        f"opaque /{LOWER_DIR}: want an empty regular {LOWER_DIR}/.wh..wh..opq, got {opq}"
    )
    assert f"{LOWER_DIR}/conform-f" in members, "the opaque dir's new child is missing"


def _whiteout_layers(workspace) -> tuple[Path, Path]:
    """A base layer (rootfs + conform-x + conform-d/{a,b}) and a layer on top that deletes
    conform-x and makes conform-d opaque with a new child c."""
    d = workspace.path(token("conform-layers"))
    bottom = layertar.write(
        d / "bottom.tar",
        [file("conform-x", "x"), directory("conform-d"), file("conform-d/a"), file("conform-d/b")],
        base=workspace.base_tree(),
    )
    top = layertar.write(
        d / "top.tar",
        [
            file(".wh.conform-x"),
            directory("conform-d"),
            file("conform-d/.wh..wh..opq"),
            file("conform-d/c", "c"),
        ],
    )
    return bottom, top


@pytest.mark.behaviour("OVL-09")
@pytest.mark.requires("load", "detach", "lowerdirs")
def test_applied_layer_recreates_whiteouts(runtime, container, workspace):
    bottom, top = _whiteout_layers(workspace)
    ref = f"localhost/conform-load:{uuid.uuid4().hex[:12]}"
    image = container.load(layertar.oci_layout(bottom.with_name("image.tar"), [bottom, top], ref))
    s = started(
        runtime,
        container,
        ContainerSpec(image=image),
        prepare="stat /conform-x 2> /tmp/stat-err; ls -A /conform-d > /tmp/ls",
    )
    err = facts.read_in_root(s.pid, "/tmp/stat-err") or ""
    assert "No such file or directory" in err, f"a whited-out file is visible: {err!r}"
    assert (facts.read_in_root(s.pid, "/tmp/ls") or "").split() == ["c"], (
        "an opaque directory shows lower children: "
        f"{(facts.read_in_root(s.pid, '/tmp/ls') or '').split()}"
    )
    stored = runtime.lowerdirs(s.container)[0]
    assert facts.is_whiteout(stored / "conform-x"), (
        f"the applied layer {stored} holds {_kind(stored / 'conform-x')} for .wh.conform-x"
    )
    assert _opaque(stored / "conform-d") == b"y", "no opaque xattr for .wh..wh..opq"
    left = [str(p) for p in stored.rglob(".wh.*")]
    assert not left, f".wh. files stored as such in the applied layer: {left}"


@pytest.mark.behaviour("OVL-09")
@pytest.mark.requires("import", "detach", "lowerdirs")
def test_imported_whiteouts_become_overlay_whiteouts(runtime, container, workspace):
    tar = layertar.write(
        workspace.path(token("conform-import")) / "rootfs.tar",
        [
            file(".wh.conform-x"),
            directory("conform-d"),
            file("conform-d/keep"),
            file("conform-d/.wh..wh..opq"),
        ],
        base=workspace.base_tree(),
    )
    s = started(runtime, container, ContainerSpec(image=container.import_rootfs(tar)))
    stored = runtime.lowerdirs(s.container)[0]
    assert facts.is_whiteout(stored / "conform-x"), (
        f"the imported layer {stored} holds {_kind(stored / 'conform-x')} for .wh.conform-x"
    )
    assert _opaque(stored / "conform-d") == b"y", "no opaque xattr for .wh..wh..opq"
    assert os.listdir(_in_root(s.pid, "conform-d")) == ["keep"], "the layer's own child is gone"


def _escapes(canary: Path) -> dict[str, list[layertar.Entry]]:
    up = "../" * 16 + str(canary).lstrip("/")
    return {
        "dotdot": [file(f"{up}/dotdot", "evil")],
        "absolute": [file(f"{canary}/absolute", "evil")],
        "symlink-absolute": [symlink("lnk", str(canary)), file("lnk/through", "evil")],
        "symlink-relative": [symlink("lnk", up), file("lnk/through", "evil")],
        "hardlink-dotdot": [hardlink("hl", f"{up}/victim"), file("hl", "evil")],
        "hardlink-absolute": [hardlink("hl", f"{canary}/victim"), file("hl", "evil")],
        "bare-whiteout": [file(".wh.")],
        "whiteout-dotdot": [file(".wh...")],
    }


def _import_escape(container, workspace, kind: str) -> bool:
    """Import a tar holding one `kind` of escaping entry; prove nothing outside the tree was
    created, changed or linked (a canary dir outside), and tell whether it was accepted."""
    canary = Path(f"/tmp/conform-canary-{uuid.uuid4().hex[:12]}")
    canary.mkdir()
    try:
        (canary / "victim").write_text("victim\n")
        entries = [directory("conform-ok"), file("conform-ok/f", "ok"), *_escapes(canary)[kind]]
        tar = layertar.write(workspace.path(token("conform-escape")) / f"{kind}.tar", entries)
        try:
            container.import_rootfs(tar)
            accepted = True
        except RuntimeFailure:
            accepted = False
        victim = canary / "victim"
        assert sorted(os.listdir(canary)) == ["victim"], (
            f"{kind}: the layer wrote outside its tree: {sorted(os.listdir(canary))}"
        )
        assert victim.read_text() == "victim\n" and victim.stat().st_nlink == 1, (
            f"{kind}: the layer changed or linked a file outside its tree"
        )
        return accepted
    finally:
        shutil.rmtree(canary, ignore_errors=True)


ESCAPING = [k for k in _escapes(Path("/x")) if k != "bare-whiteout"]


@pytest.mark.behaviour("OVL-09")
@pytest.mark.requires("import")
@pytest.mark.parametrize("kind", list(_escapes(Path("/x"))))
def test_escaping_layer_entries_stay_inside(runtime, container, workspace, kind):
    """MUST: whatever the runtime does with such an entry, nothing lands outside its tree."""
    _import_escape(container, workspace, kind)


@pytest.mark.behaviour("OVL-12")
@pytest.mark.requires("import")
def test_bare_whiteout_is_refused(runtime, container, workspace):
    assert not _import_escape(container, workspace, "bare-whiteout"), (
        "a layer with a bare `.wh.` entry was accepted"
    )


@pytest.mark.behaviour("OVL-13")
@pytest.mark.requires("import")
@pytest.mark.parametrize("kind", ESCAPING)
def test_escaping_layer_entries_are_refused(runtime, container, workspace, kind):
    """This project's policy (moby resolves such names inside the root instead): refuse."""
    assert not _import_escape(container, workspace, kind), (
        f"a layer with a {kind} entry was accepted (nothing was written outside its tree)"
    )


@pytest.mark.behaviour("OVL-10")
@pytest.mark.requires("detach", "commit")
def test_hardlinks_and_owners_survive_commit(runtime, container):
    s = started(
        runtime,
        container,
        ContainerSpec(),
        prepare="echo data > /conform-h1 && ln /conform-h1 /conform-h2 && "
        "chown 1234:5678 /conform-h1 && mkdir /conform-o && chown 4321:8765 /conform-o",
    )
    image = container.commit(s.container)
    res = ran(
        runtime,
        ContainerSpec(
            image=image,
            argv=sh(
                "for p in /conform-h1 /conform-h2 /conform-o;"
                ' do echo "$p=$(stat -c "%i %h %u:%g" $p)"; done'
            ),
        ),
    )
    got = dict(ln.split("=", 1) for ln in res.stdout.splitlines() if "=" in ln)
    h1, h2 = got["/conform-h1"].split(), got["/conform-h2"].split()
    assert h1[0] == h2[0] and h1[1] == "2", f"hard links not kept: {h1} vs {h2}"
    assert h1[2] == "1234:5678", f"file owner not kept: {h1[2]}"
    assert got["/conform-o"].split()[2] == "4321:8765", f"dir owner: {got['/conform-o']}"


@pytest.mark.behaviour("OVL-14")
@pytest.mark.requires("detach", "commit")
def test_hardlink_to_a_lower_file_survives_commit(runtime, container):
    s = started(runtime, container, ContainerSpec(), prepare="ln /etc/group /etc/conform-gl")
    image = container.commit(s.container)
    res = ran(
        runtime,
        ContainerSpec(
            image=image,
            argv=sh(
                'for p in /etc/group /etc/conform-gl; do echo "$p=$(stat -c "%i %h" $p)"; done'
            ),
        ),
    )
    got = dict(ln.split("=", 1) for ln in res.stdout.splitlines() if "=" in ln)
    g, gl = got["/etc/group"].split(), got["/etc/conform-gl"].split()
    assert g[0] == gl[0] and g[1] == "2", f"a link to a lower file is not kept: {g} vs {gl}"
