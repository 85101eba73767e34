"""rref build: Dockerfile instructions, cache, .dockerignore, multi-stage, errors."""

from __future__ import annotations

import os
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import Rref


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    (tmp_path / "hello.txt").write_text("hello\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "s.txt").write_text("s\n")
    (tmp_path / "secret.key").write_text("do not ship\n")
    (tmp_path / ".dockerignore").write_text("*.key\n")
    src = tmp_path / "tarsrc"
    (src / "x").mkdir(parents=True)
    (src / "x" / "in.txt").write_text("inside\n")
    with tarfile.open(tmp_path / "archive.tgz", "w:gz") as tf:
        tf.add(src / "x", arcname="x")
    return tmp_path


def tag() -> str:
    return f"rref-t-{uuid.uuid4().hex[:8]}:b"


DOCKERFILE = """\
FROM busybox AS base
ARG GREETING=hi
ENV APP=/app
WORKDIR $APP
COPY hello.txt .
COPY sub /app/sub/
ADD archive.tgz /opt/
RUN echo "$GREETING from run" > /app/run.txt && rm /etc/group
COPY *.txt /keys/
COPY --chown=1000:1000 hello.txt /tmp/owned
LABEL stage=one
EXPOSE 8080
USER nobody
CMD ["cat", "/app/run.txt"]
"""


def test_build_every_instruction(rref: Rref, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    t = tag()
    out = rref.out("build", "-t", t, "--build-arg", "GREETING=yo", str(ctx))
    assert "Step 14/14 : CMD" in out and f"Successfully tagged {t}" in out
    assert rref.out("run", "--rm", t) == "yo from run\n"
    check = rref.out(
        "run",
        "--rm",
        t,
        "sh",
        "-c",
        "pwd; id -u; cat /app/hello.txt /app/sub/s.txt /opt/x/in.txt; ls /keys; "
        "cat /etc/group 2>&1; stat -c '%a %u' /tmp /tmp/owned; "
        "ls /app/secret.key /keys/secret.key 2>&1 | grep -c 'No such'",
    )
    lines = check.strip().split("\n")
    assert lines[:5] == ["/app", "65534", "hello", "s", "inside"]
    assert lines[5] == "hello.txt"  # `*.txt` does not cross into sub/
    assert "No such file or directory" in lines[6]  # RUN's deletion is a whiteout layer
    assert lines[7:9] == ["1777 0", "644 1000"]  # /tmp keeps its mode under a COPY
    assert lines[9] == "2"  # .dockerignore kept the key out of the image
    cfg = rref.out("inspect", "--type", "image", "-f", "{{json .Config}}", t)
    assert '"stage": "one"' in cfg and "8080/tcp" in cfg and '"User": "nobody"' in cfg


def test_build_cache_is_used_and_invalidated(rref: Rref, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /h\nRUN cat /h > /copy\n")
    t = tag()
    first = rref.out("build", "-t", t, str(ctx))
    assert "Using cache" not in first
    again = rref.out("build", "-t", t, str(ctx))
    assert again.count("Using cache") == 2
    (ctx / "hello.txt").write_text("changed\n")
    third = rref.out("build", "-t", t, str(ctx))
    assert "Using cache" not in third  # the file content is part of the key
    assert rref.out("run", "--rm", t, "cat", "/copy") == "changed\n"
    nocache = rref.out("build", "--no-cache", "-t", t, str(ctx))
    assert "Using cache" not in nocache


def test_multi_stage_copy_from(rref: Rref, ctx: Path) -> None:
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/artifact\n"
        "FROM busybox\nCOPY --from=builder /out/artifact /artifact\n"
    )
    t = tag()
    rref("build", "-t", t, str(ctx))
    assert rref.out("run", "--rm", t, "cat", "/artifact") == "built\n"


@pytest.mark.parametrize(
    ("dockerfile", "needle"),
    [
        (
            "FROM busybox\nRUN exit 3\n",
            "Dockerfile:2: The command '/bin/sh -c exit 3' returned a non-zero code: 3",
        ),
        ("FROM busybox\nFROBNICATE x\n", "Dockerfile:2: unknown instruction: FROBNICATE"),
        ("FROM nosuchbase\n", "Dockerfile:1: Unable to find image 'nosuchbase:latest'"),
        ("FROM busybox\nCOPY missing.txt /m\n", "Dockerfile:2: missing.txt: no such file"),
        ("FROM busybox\nCOPY ../outside /o\n", "Dockerfile:2: forbidden path outside the build"),
        ("FROM busybox\nADD http://127.0.0.1/x /x\n", "Dockerfile:2: sources from URLs"),
        ("RUN true\n", "Dockerfile:1: the first instruction must be FROM"),
    ],
)
def test_build_errors_name_file_and_line(
    fresh_rref: Rref, ctx: Path, dockerfile: str, needle: str
) -> None:
    (ctx / "Dockerfile").write_text(dockerfile)
    p = fresh_rref("build", "-t", tag(), str(ctx), check=False)
    assert p.returncode == 1, p.stderr
    err = p.stderr.strip()
    assert len(err.splitlines()) == 1 and needle in err, err
    assert fresh_rref.out("ps", "-aq") == ""  # a failed RUN leaves no container behind


def test_build_with_other_dockerfile_name(rref: Rref, ctx: Path) -> None:
    (ctx / "Other.df").write_text("FROM busybox\nENV X=from-other\n")
    t = tag()
    rref("build", "-f", str(ctx / "Other.df"), "-t", t, str(ctx))
    assert rref.out("run", "--rm", t, "sh", "-c", "echo $X") == "from-other\n"
    assert os.path.exists(ctx / "Other.df")
