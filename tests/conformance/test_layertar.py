"""Crafted layer tars, OCI layouts and the readers the OVL/INIT/VOL tests judge with."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path

from conformance import facts, layertar
from conformance.layertar import directory, file, hardlink, symlink


def test_entries_are_written_exactly_as_given(tmp_path: Path):
    tar = layertar.write(
        tmp_path / "x.tar",
        [
            file("../../etc/evil", "e"),
            file("/abs/path"),
            symlink("lnk", "/outside"),
            hardlink("hl", "../victim"),
            file(".wh."),
            directory("d"),
        ],
    )
    with tarfile.open(tar) as tf:
        names = [(m.name, m.type, m.linkname) for m in tf]
    assert names == [
        ("../../etc/evil", tarfile.REGTYPE, ""),
        ("/abs/path", tarfile.REGTYPE, ""),
        ("lnk", tarfile.SYMTYPE, "/outside"),
        ("hl", tarfile.LNKTYPE, "../victim"),
        (".wh.", tarfile.REGTYPE, ""),
        ("d", tarfile.DIRTYPE, ""),
    ]


def test_members_normalise_names_and_read_pax_xattrs(tmp_path: Path):
    tar = tmp_path / "l.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("./usr/")
        info.type = tarfile.DIRTYPE
        info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y"}
        tf.addfile(info)
        dev = tarfile.TarInfo("etc/group")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)
    got = layertar.members(tar)
    assert set(got) == {"usr", "etc/group"}
    assert got["usr"].kind == "dir" and got["usr"].xattrs == ["trusted.overlay.opaque"]
    assert got["etc/group"].kind == "char"


def test_oci_layout_names_blobs_by_digest(tmp_path: Path):
    a = layertar.write(tmp_path / "a.tar", [file("a", "1")])
    b = layertar.write(tmp_path / "b.tar", [file(".wh.a")])
    out = layertar.oci_layout(tmp_path / "img.tar", [a, b], "localhost/conform-x:1")
    with tarfile.open(out) as tf:
        blobs = {
            m.name.rsplit("/", 1)[1]: tf.extractfile(m).read()
            for m in tf
            if m.name.startswith("blobs/sha256/")
        }
        index = json.load(tf.extractfile("index.json"))
        assert json.load(tf.extractfile("oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    assert all(hashlib.sha256(v).hexdigest() == k for k, v in blobs.items())
    desc = index["manifests"][0]
    assert desc["annotations"][layertar.REF_NAME] == "localhost/conform-x:1"
    manifest = json.loads(blobs[desc["digest"][7:]])
    config = json.loads(blobs[manifest["config"]["digest"][7:]])
    layers = [d["digest"] for d in manifest["layers"]]
    assert config["rootfs"]["diff_ids"] == layers
    assert layers == [f"sha256:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in (a, b)]


def test_tree_state_sees_content_mode_and_links(tmp_path: Path):
    (tmp_path / "f").write_text("one")
    os.link(tmp_path / "f", tmp_path / "g")
    os.symlink("f", tmp_path / "s")
    before = facts.tree_state(tmp_path)
    assert set(before) == {"f", "g", "s"} and before["s"][5] == "f"
    os.chmod(tmp_path / "f", 0o600)
    after = facts.tree_state(tmp_path)
    assert after["f"] != before["f"] and after["s"] == before["s"]
    assert not facts.is_whiteout(tmp_path / "f")
    os.mknod(tmp_path / "wh", 0o600 | 0o020000, os.makedev(0, 0))
    assert facts.is_whiteout(tmp_path / "wh")


def test_blkio_weight_text():
    from conformance.facts import _default_weight

    assert _default_weight("100\n") == 100
    assert _default_weight("default 300\n8:0 200\n") == 300
    assert _default_weight("") is None
