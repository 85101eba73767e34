"""Device rules on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program, as runc attaches.

cgroup v2 has no devices.allow/deny files: the kernel asks an eBPF program attached to
the cgroup (BPF_CGROUP_DEVICE) on every open and mknod of a device node. This module
turns OCI `linux.resources.devices` rules into such a program with v1's meaning (rules
apply in order, a later one wins, nothing matched is denied, as after v1's
"devices.deny a"), loads it with the bpf(2) syscall and attaches it to the container's
cgroup. No compiler and no bcc: the program is a few hundred instructions assembled here.

The attachment holds the program: it lives until the cgroup is removed.
"""

from __future__ import annotations

import ctypes
import os
import struct

from ._files import CgroupError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SYS_BPF = 321  # x86_64
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_QUERY = 5, 8, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6  # attach type
BPF_F_ALLOW_MULTI = 2
# struct bpf_cgroup_dev_ctx { u32 access_type /* (access << 16) | type */; u32 major, minor; }
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACCESS = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}
TYPES = {"b": DEV_BLOCK, "c": DEV_CHAR}

# opcodes (class | op | source)
LDX_W = 0x61  # dst = *(u32 *)(src + off)
ALU64_AND_K, ALU64_RSH_K = 0x57, 0x77
ALU64_MOV_K, ALU64_MOV_X = 0xB7, 0xBF
JA, JEQ_K, JNE_K, EXIT = 0x05, 0x15, 0x55, 0x95
R0, R1, R2, R3, R4, R5 = range(6)


class Asm:
    """eBPF instructions with forward jumps to named labels, resolved by `code`."""

    def __init__(self) -> None:
        self.insns: list[tuple[int, int, int, int, str | None]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> None:
        self.insns.append((code, dst | (src << 4), off, imm, None))

    def jump(self, code: int, label: str, dst: int = 0, imm: int = 0) -> None:
        self.insns.append((code, dst, 0, imm, label))

    def targets(self, name: str) -> bool:
        return any(t == name for *_, t in self.insns)

    def label(self, name: str) -> None:
        self.labels[name] = len(self.insns)

    def code(self) -> bytes:
        out = bytearray()
        for i, (code, regs, off, imm, target) in enumerate(self.insns):
            if target is not None:
                off = self.labels[target] - i - 1
            out += struct.pack("<BBhi", code, regs, off, imm)
        return bytes(out)


def program(rules: list[dict[str, Any]]) -> bytes:
    """The instructions that allow an access iff, for each access bit it asks for, the last
    rule matching the device and naming that bit allows it."""
    a = Asm()
    a.op(LDX_W, R2, R1, 0)  # r2 = access_type
    a.op(ALU64_MOV_X, R3, R2)
    a.op(ALU64_AND_K, R2, imm=0xFFFF)  # r2 = device type
    a.op(ALU64_RSH_K, R3, imm=16)  # r3 = access asked
    a.op(LDX_W, R4, R1, 4)  # r4 = major
    a.op(LDX_W, R5, R1, 8)  # r5 = minor
    parsed = [_rule(r) for r in rules]
    for bit in (ACC_MKNOD, ACC_READ, ACC_WRITE):
        done = f"done{bit}"
        a.op(ALU64_MOV_X, R0, R3)
        a.op(ALU64_AND_K, R0, imm=bit)
        a.jump(JEQ_K, done, R0, 0)  # this bit is not asked for
        for n, (allow, kind, major, minor, access) in enumerate(reversed(parsed)):
            if not access & bit:
                continue
            skip = f"skip{bit}.{n}"
            tests = [(R2, kind), (R4, major), (R5, minor)]
            for reg, want in tests:
                if want is not None:
                    a.jump(JNE_K, skip, reg, want)
            a.jump(JA, done if allow else "deny")
            if all(want is None for _, want in tests):
                break  # matches every device: the rules before it are never reached
            a.label(skip)
        else:
            a.jump(JA, "deny")  # no rule names this device and bit
        a.label(done)
    a.op(ALU64_MOV_K, R0, imm=1)
    a.op(EXIT)
    if a.targets("deny"):  # the verifier refuses unreachable code
        a.label("deny")
        a.op(ALU64_MOV_K, R0, imm=0)
        a.op(EXIT)
    return a.code()


def _rule(rule: dict[str, Any]) -> tuple[bool, int | None, int | None, int | None, int]:
    kind = rule.get("type") or "a"
    access = 0
    for ch in rule.get("access") or "rwm":
        access |= ACCESS[ch]

    def num(k: str) -> int | None:
        v = rule.get(k)
        return None if v is None or v == -1 else int(v)

    return bool(rule.get("allow")), TYPES.get(kind), num("major"), num("minor"), access


_libc: ctypes.CDLL | None = None


def _bpf(cmd: int, attr: bytes) -> tuple[int, bytes]:
    """bpf(cmd, attr): the result and the attr as the kernel left it; OSError on failure."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, len(attr))
    ret = _libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret), buf.raw


def load(insns: bytes) -> int:
    """Load the program; its fd."""
    code = ctypes.create_string_buffer(insns, len(insns))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack(
        "<IIQQIIQII16sII",
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(insns) // 8,
        ctypes.addressof(code),
        ctypes.addressof(license_),
        1,  # log_level: the verifier says why, if it refuses
        len(log),
        ctypes.addressof(log),
        0,
        0,
        b"rref_devices",
        0,
        0,
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr)[0]
    except OSError as e:
        lines = log.value.decode(errors="replace").strip().splitlines()
        why = next((ln for ln in lines if not ln.startswith("processed ")), e.strerror)
        raise CgroupError(f"cannot load the cgroup v2 device program: {why}") from None


def attach(cgdir: str, rules: list[dict[str, Any]]) -> None:
    """Attach a program enforcing `rules` to the cgroup directory `cgdir`."""
    prog = load(program(rules))
    try:
        target = os.open(cgdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            _bpf(
                BPF_PROG_ATTACH,
                struct.pack("<IIIII", target, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI, 0),
            )
        finally:
            os.close(target)
    except OSError as e:
        raise CgroupError(f"cannot attach the device program to {cgdir}: {e.strerror}") from None
    finally:
        os.close(prog)


def attached(cgdir: str) -> int:
    """How many device programs are attached to `cgdir` itself (BPF_PROG_QUERY)."""
    ids = ctypes.create_string_buffer(64 * 4)
    fd = os.open(cgdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt (in: room)
        attr = struct.pack("<IIIIQI", fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
        return int(struct.unpack_from("<I", _bpf(BPF_PROG_QUERY, attr)[1], 24)[0])
    finally:
        os.close(fd)
