"""Flag tables and the one decoder both backends feed, so their records are identical.

Why our own tables: neither bcc nor python-ptrace decodes namespace flags, mount flags or
clone3's struct; the values below are the kernel's uapi constants (linux/sched.h, mount.h,
stat.h, fcntl.h), which do not change between kernels.

`decode(syscall, raw)` takes the syscall's raw arguments under these keys (ints as the
kernel saw them, strings already read from user memory, None where unreadable):

    clone      flags                      clone3  flags, exit_signal (from struct clone_args)
    unshare    flags                      setns   fd, nstype
    mount      source, target, fstype, flags, data
    umount2    target, flags              pivot_root  new_root, put_old
    chroot     path                       sethostname / setdomainname  name
    mknodat    dfd, path, mode, dev       mknod   path, mode, dev
    execve     filename, argv (list)      execveat  dfd, filename, argv, flags
    openat     dfd, path, flags           openat2   dfd, path, flags (open_how.flags)
    write      fd, data (first bytes, str)
    mkdir      path, mode                 mkdirat  dfd, path, mode
    unlinkat   dfd, path, flags           unlink  path
    fork       child_pid                  exit    (none)

and returns the record's ``args`` (see probes/events.py). Unknown keys pass through.
"""

from __future__ import annotations

import errno
import signal
from typing import Any

AT_FDCWD = -100

CLONE_FLAGS: dict[str, int] = {
    "CLONE_VM": 0x00000100,
    "CLONE_FS": 0x00000200,
    "CLONE_FILES": 0x00000400,
    "CLONE_SIGHAND": 0x00000800,
    "CLONE_PIDFD": 0x00001000,
    "CLONE_PTRACE": 0x00002000,
    "CLONE_VFORK": 0x00004000,
    "CLONE_PARENT": 0x00008000,
    "CLONE_THREAD": 0x00010000,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_SYSVSEM": 0x00040000,
    "CLONE_SETTLS": 0x00080000,
    "CLONE_PARENT_SETTID": 0x00100000,
    "CLONE_CHILD_CLEARTID": 0x00200000,
    "CLONE_DETACHED": 0x00400000,
    "CLONE_UNTRACED": 0x00800000,
    "CLONE_CHILD_SETTID": 0x01000000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_IO": 0x80000000,
    "CLONE_CLEAR_SIGHAND": 0x100000000,
    "CLONE_INTO_CGROUP": 0x200000000,
}
#: CLONE_NEWTIME shares its bit with CSIGNAL's range in clone(); it is a namespace flag for
#: unshare/setns/clone3 only.
CLONE_NEWTIME = 0x00000080
CSIGNAL = 0x000000FF

#: The namespace flags, in the order a timeline shows them.
_NS_ORDER = ("NEWNS", "NEWCGROUP", "NEWUTS", "NEWIPC", "NEWUSER", "NEWPID", "NEWNET")
NS_FLAGS: dict[str, int] = {f"CLONE_{n}": CLONE_FLAGS[f"CLONE_{n}"] for n in _NS_ORDER}
NS_FLAGS["CLONE_NEWTIME"] = CLONE_NEWTIME
#: Namespace flag -> the /proc/<pid>/ns name of that namespace.
NS_NAMES: dict[str, str] = {
    "CLONE_NEWNS": "mnt",
    "CLONE_NEWCGROUP": "cgroup",
    "CLONE_NEWUTS": "uts",
    "CLONE_NEWIPC": "ipc",
    "CLONE_NEWUSER": "user",
    "CLONE_NEWPID": "pid",
    "CLONE_NEWNET": "net",
    "CLONE_NEWTIME": "time",
}

MS_FLAGS: dict[str, int] = {
    "MS_RDONLY": 1,
    "MS_NOSUID": 2,
    "MS_NODEV": 4,
    "MS_NOEXEC": 8,
    "MS_SYNCHRONOUS": 16,
    "MS_REMOUNT": 32,
    "MS_MANDLOCK": 64,
    "MS_DIRSYNC": 128,
    "MS_NOSYMFOLLOW": 256,
    "MS_NOATIME": 1024,
    "MS_NODIRATIME": 2048,
    "MS_BIND": 4096,
    "MS_MOVE": 8192,
    "MS_REC": 16384,
    "MS_SILENT": 32768,
    "MS_POSIXACL": 1 << 16,
    "MS_UNBINDABLE": 1 << 17,
    "MS_PRIVATE": 1 << 18,
    "MS_SLAVE": 1 << 19,
    "MS_SHARED": 1 << 20,
    "MS_RELATIME": 1 << 21,
    "MS_KERNMOUNT": 1 << 22,
    "MS_I_VERSION": 1 << 23,
    "MS_STRICTATIME": 1 << 24,
    "MS_LAZYTIME": 1 << 25,
}
MS_MGC_MSK = 0xFFFF0000
MS_MGC_VAL = 0xC0ED0000

UMOUNT_FLAGS: dict[str, int] = {
    "MNT_FORCE": 1,
    "MNT_DETACH": 2,
    "MNT_EXPIRE": 4,
    "UMOUNT_NOFOLLOW": 8,
}

S_IFMT = 0o170000
S_IF: dict[str, int] = {
    "S_IFSOCK": 0o140000,
    "S_IFLNK": 0o120000,
    "S_IFREG": 0o100000,
    "S_IFBLK": 0o060000,
    "S_IFDIR": 0o040000,
    "S_IFCHR": 0o020000,
    "S_IFIFO": 0o010000,
}

O_ACCMODE = 3
O_ACC: dict[int, str] = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}
O_FLAGS: dict[str, int] = {
    "O_CREAT": 0o100,
    "O_EXCL": 0o200,
    "O_NOCTTY": 0o400,
    "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000,
    "O_DSYNC": 0o10000,
    "O_DIRECT": 0o40000,
    "O_LARGEFILE": 0o100000,
    "O_DIRECTORY": 0o200000,
    "O_NOFOLLOW": 0o400000,
    "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000,
    "O_PATH": 0o10000000,
    "O_TMPFILE": 0o20000000 | 0o200000,
}
AT_REMOVEDIR = 0x200


def bits(value: int, table: dict[str, int]) -> list[str]:
    """Names of the bits of ``value`` set in ``table``; leftover bits as one hex entry."""
    names = []
    rest = value
    for name, bit in table.items():
        if bit and value & bit == bit and rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return names


def signal_name(num: int) -> str:
    if num == 0:
        return "0"
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


def clone_flags(flags: int, *, with_signal: bool) -> list[str]:
    """CLONE_* names of clone()/clone3() flags; clone()'s low byte is the exit signal."""
    if with_signal:
        return bits(flags & ~CSIGNAL, CLONE_FLAGS)
    return bits(flags, CLONE_FLAGS)


def ns_flags(flags: int) -> list[str]:
    """unshare() flags: namespace flags first, then the rest of CLONE_*."""
    table = {**NS_FLAGS, **CLONE_FLAGS}
    return bits(flags, table)


def nstype(value: int) -> str:
    """setns() nstype: one CLONE_NEW* name, "0" (any type), or the value in hex."""
    if value == 0:
        return "0"
    names = bits(value, NS_FLAGS)
    return "|".join(names)


def mount_flags(flags: int) -> list[str]:
    if flags & MS_MGC_MSK == MS_MGC_VAL:
        flags &= ~MS_MGC_MSK
    return bits(flags, MS_FLAGS)


def file_type(mode: int) -> str:
    fmt = mode & S_IFMT
    for name, value in S_IF.items():
        if value == fmt:
            return name
    return "0" if fmt == 0 else oct(fmt)


def mode_string(mode: int) -> str:
    """ "S_IFCHR|0666" (the file type, then the permission bits in octal)."""
    return f"{file_type(mode)}|{mode & 0o7777:04o}"


def dev_numbers(dev: int) -> list[int]:
    """[major, minor] of a dev_t as the mknod syscall takes it (the kernel's new_decode_dev)."""
    dev &= 0xFFFFFFFF
    return [(dev & 0xFFF00) >> 8, (dev & 0xFF) | ((dev >> 12) & 0xFFF00)]


def open_flags(flags: int) -> list[str]:
    return [O_ACC.get(flags & O_ACCMODE, "O_ACCMODE"), *bits(flags & ~O_ACCMODE, O_FLAGS)]


def _int(raw: dict[str, Any], key: str) -> int:
    value = raw.get(key)
    return int(value) if value is not None else 0


def decode(syscall: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The decoded ``args`` of one record from the raw arguments (keys: module docstring)."""
    out = dict(raw)
    if syscall == "clone":
        flags = _int(raw, "flags")
        out["flags"] = clone_flags(flags, with_signal=True)
        out["flags_raw"] = flags
        out["exit_signal"] = signal_name(flags & CSIGNAL)
    elif syscall == "clone3":
        flags = _int(raw, "flags")
        out["flags"] = clone_flags(flags, with_signal=False)
        out["flags_raw"] = flags
        out["exit_signal"] = signal_name(_int(raw, "exit_signal"))
    elif syscall == "unshare":
        flags = _int(raw, "flags")
        out["flags"] = ns_flags(flags)
        out["flags_raw"] = flags
    elif syscall == "setns":
        value = _int(raw, "nstype")
        out["fd"] = _int(raw, "fd")
        out["nstype"] = nstype(value)
        out["nstype_raw"] = value
    elif syscall == "mount":
        flags = _int(raw, "flags")
        out["flags"] = mount_flags(flags)
        out["flags_raw"] = flags
        for key in ("source", "target", "fstype", "data"):
            out.setdefault(key, None)
    elif syscall == "umount2":
        flags = _int(raw, "flags")
        out["flags"] = bits(flags, UMOUNT_FLAGS)
        out["flags_raw"] = flags
    elif syscall in ("mknodat", "mknod"):
        mode = _int(raw, "mode")
        out["mode"] = mode_string(mode)
        out["type"] = file_type(mode)
        out["perm"] = mode & 0o7777
        out["dev"] = dev_numbers(_int(raw, "dev"))
        if syscall == "mknodat":
            out["dfd"] = _int(raw, "dfd")
    elif syscall in ("openat", "openat2"):
        flags = _int(raw, "flags")
        out["flags"] = open_flags(flags)
        out["flags_raw"] = flags
        out["dfd"] = _int(raw, "dfd")
    elif syscall in ("mkdir", "mkdirat"):
        out["mode"] = _int(raw, "mode") & 0o7777
    elif syscall == "unlinkat":
        flags = _int(raw, "flags")
        out["flags"] = ["AT_REMOVEDIR"] if flags & AT_REMOVEDIR else []
        out["flags_raw"] = flags
    elif syscall in ("execve", "execveat"):
        out["argv"] = [str(a) for a in raw.get("argv") or []]
    elif syscall == "fork":
        out["child_pid"] = _int(raw, "child_pid")
    return out


def errno_name(ret: int) -> str:
    """ "-ENOENT" for a failed syscall's return value, else the number."""
    if ret < 0:
        return "-" + errno.errorcode.get(-ret, str(-ret))
    return str(ret)
