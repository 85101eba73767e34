"""Bridge networking for rref containers: a Linux bridge, file-backed IPAM, veth pairs.

Model (docker's default `bridge` network, minus NAT and the default route):

* `Bridge(name, subnet).ensure()` creates the bridge (default `rref0`,
  172.31.240.0/24), gives it the gateway address (.1 of the subnet) and brings
  it up. The only route this adds is the connected subnet route the kernel
  creates for that address. No sysctls, no NAT, no firewall rules.
* `IPAM` hands out addresses of the subnet from a JSON file
  (`<state_dir>/network/<bridge>.json`), serialised with `fcntl.flock` on a
  sibling `.lock` file, so concurrent rref processes never hand out one address
  twice.
* `attach(container_id, pid, bridge, state_dir)` allocates an address and
  creates the veth pair `rref<first 8 hex of id>` (host side, enslaved to the
  bridge, up) whose peer is created directly in the network namespace of `pid`
  (IFLA_NET_NS_PID on the peer, so it never appears on the host) under the
  temporary name `peer_ifname(container_id)` with the MAC `mac_for(address)`.

The in-namespace half (rename the peer to eth0, add the address, bring eth0
and lo up, and add no route) can run in two places:

* inside the container: its init, already in its own network namespace (and
  with pyroute2 imported), calls `configure_inside(ifname_tmp, address,
  prefixlen)` with `PeerIfname`, `IPAddress` and `IPPrefixLen` from the dict
  `attach(..., configure=False)` (the default) returned. This is the fast path:
  no namespace switch and no extra netlink socket on the host side;
* from the host: `attach(..., configure=True)`, or `configure_netns(pid, ...)`
  on its own, runs the same `configure_inside` in a short-lived thread that
  has joined the namespace of `pid` with setns(2) (per-thread for network
  namespaces, so the calling thread never leaves the host namespace).

pyroute2 is imported only inside the functions that talk netlink; importing
this module costs just the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import os

from . import scratch
from .errors import EXIT_RUNTIME, RrefError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

    from pyroute2 import IPRoute

DEFAULT_BRIDGE = "rref0"
DEFAULT_SUBNET = "172.31.240.0/24"
CONTAINER_IFNAME = "eth0"
HOST_LOCK = "/run/rref-network.lock"  # serialises bridge creation + overlap checks host-wide
IFNAMSIZ = 15  # usable characters of a Linux interface name
_HEX = frozenset("0123456789abcdef")
_RESERVED = ipaddress.ip_network("10.0.0.0/8")


class NetworkError(RrefError):
    """A networking failure, as one line; ends an rref command with exit code 125."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_RUNTIME)


# ---------------------------------------------------------------- names and addresses


def host_veth_name(container_id: str) -> str:
    """`rref` + the first 8 hex digits of the id: the host side of the container's veth."""
    cid = container_id.lower()
    if len(cid) < 8 or not set(cid[:8]) <= _HEX:
        raise NetworkError(f"invalid container id {container_id!r}: need at least 8 hex digits")
    return "rref" + cid[:8]


def peer_ifname(container_id: str) -> str:
    """The temporary name of the container side until it is renamed to eth0."""
    return "rrefc" + host_veth_name(container_id)[4:]


def mac_for(address: str) -> str:
    """docker's scheme: 02:42 followed by the four bytes of the IPv4 address."""
    packed = ipaddress.IPv4Address(address).packed
    return "02:42:" + ":".join(f"{b:02x}" for b in packed)


def _check_ifname(name: str, what: str = "bridge") -> str:
    if not name or len(name) > IFNAMSIZ or any(c in name for c in "/: \t\n") or name in (".", ".."):
        raise NetworkError(
            f"invalid {what} name {name!r}: 1-{IFNAMSIZ} characters, no '/', ':' or spaces"
        )
    if "rref" not in name:
        raise NetworkError(
            f"invalid {what} name {name!r}: rref only manages interfaces whose name contains 'rref'"
        )
    return name


def _parse_subnet(subnet: str) -> ipaddress.IPv4Network:
    try:
        net = ipaddress.ip_network(subnet, strict=True)
    except ValueError as e:
        raise NetworkError(f"invalid subnet {subnet!r}: {e}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise NetworkError(f"invalid subnet {subnet!r}: only IPv4 is supported")
    if not 8 <= net.prefixlen <= 30:
        raise NetworkError(f"invalid subnet {subnet}: the prefix length must be 8..30")
    if net.overlaps(_RESERVED):
        raise NetworkError(f"invalid subnet {subnet}: rref does not use 10.0.0.0/8")
    if not net.is_private:
        raise NetworkError(f"invalid subnet {subnet}: not a private address range")
    return net


# ---------------------------------------------------------------- netlink helpers


@contextlib.contextmanager
def _iproute() -> Iterator[IPRoute]:
    from pyroute2 import IPRoute

    try:
        ipr = IPRoute()
    except Exception as e:
        raise _fail("cannot open a netlink socket", e) from None
    try:
        yield ipr
    finally:
        ipr.close()


def _nl_code(exc: BaseException) -> int | None:
    """The errno of a pyroute2 NetlinkError (or OSError), else None."""
    code = getattr(exc, "code", None)
    if isinstance(code, int):
        return code
    return exc.errno if isinstance(exc, OSError) else None


def _fail(what: str, exc: BaseException) -> NetworkError:
    code = _nl_code(exc)
    reason = os.strerror(code) if code else str(exc)
    return NetworkError(f"{what}: {reason}")


def _get_link(ipr: IPRoute, name: str) -> Any:
    """The RTM_NEWLINK message of `name`, or None when there is no such link."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        msgs = ipr.link("get", ifname=name)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return None
        raise _fail(f"cannot look up {name}", e) from None
    for msg in msgs:
        return msg
    return None


def _link_kind(msg: Any) -> str | None:
    return msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def _del_link(ipr: IPRoute, name: str) -> bool:
    """Delete `name`; False when it was already gone."""
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        ipr.link("del", ifname=name)
    except NetlinkError as e:
        if e.code == errno.ENODEV:
            return False
        raise _fail(f"cannot delete {name}", e) from None
    return True


def _ipv4_addrs(ipr: IPRoute, index: int | None = None) -> list[tuple[str, int, int]]:
    """(address, prefixlen, ifindex) of the IPv4 addresses, of one link or of all."""
    import socket

    kw = {"index": index} if index is not None else {}
    return [
        (m.get("IFA_ADDRESS") or m.get("IFA_LOCAL"), m["prefixlen"], m["index"])
        for m in ipr.get_addr(family=socket.AF_INET, **kw)
    ]


@contextlib.contextmanager
def _flock(path: str) -> Iterator[None]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise NetworkError(f"cannot open lock {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


# ---------------------------------------------------------------- bridge


class Bridge:
    """A Linux bridge carrying one IPv4 subnet; the bridge holds the gateway (.1)."""

    def __init__(self, name: str = DEFAULT_BRIDGE, subnet: str = DEFAULT_SUBNET) -> None:
        self.name = _check_ifname(name)
        self.network = _parse_subnet(subnet)
        self.subnet = str(self.network)
        self.prefixlen = self.network.prefixlen
        self.gateway = str(self.network.network_address + 1)

    def __repr__(self) -> str:
        return f"Bridge({self.name!r}, {self.subnet!r})"

    def exists(self) -> bool:
        return os.path.exists(f"/sys/class/net/{self.name}/bridge")

    def ensure(self, ipr: IPRoute | None = None) -> int:
        """Create/configure the bridge as needed (idempotent); return its ifindex."""
        if ipr is None:
            with _iproute() as own:
                return self.ensure(own)
        index = self._ready(ipr)
        if index is not None:
            return index
        with _flock(HOST_LOCK):  # one creator at a time, and an overlap check that holds
            index = self._ready(ipr)
            if index is not None:
                return index
            return self._create(ipr)

    def _ready(self, ipr: IPRoute) -> int | None:
        """The index when the bridge exists, is up and has exactly our address, else None."""
        msg = _get_link(ipr, self.name)
        if msg is None:
            return None
        if _link_kind(msg) != "bridge":
            raise NetworkError(f"{self.name} exists and is not a bridge")
        addrs = _ipv4_addrs(ipr, msg["index"])
        for addr, plen, _ in addrs:
            if (addr, plen) != (self.gateway, self.prefixlen):
                raise NetworkError(
                    f"bridge {self.name} has address {addr}/{plen}, "
                    f"not {self.gateway}/{self.prefixlen}"
                )
        if not addrs or not msg["flags"] & 1:  # IFF_UP
            return None
        return msg["index"]

    def _create(self, ipr: IPRoute) -> int:
        from pyroute2.netlink.exceptions import NetlinkError

        msg = _get_link(ipr, self.name)
        own_index = msg["index"] if msg is not None else None
        for addr, plen, index in _ipv4_addrs(ipr):
            if index != own_index and ipaddress.ip_network(f"{addr}/{plen}", strict=False).overlaps(
                self.network
            ):
                raise NetworkError(
                    f"subnet {self.subnet} overlaps {addr}/{plen} on {_ifname(ipr, index)}"
                )
        try:
            if msg is None:
                ipr.link("add", ifname=self.name, kind="bridge", address=mac_for(self.gateway))
            index = ipr.link_lookup(ifname=self.name)[0]
            try:
                ipr.addr("add", index=index, address=self.gateway, prefixlen=self.prefixlen)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            ipr.link("set", index=index, state="up")
        except NetlinkError as e:
            raise _fail(f"cannot set up bridge {self.name}", e) from None
        return index

    def ports(self) -> list[str]:
        with _iproute() as ipr:
            return _ports(ipr, self.name)

    def remove(self, force: bool = False, state_dir: str | None = None) -> None:
        remove_bridge(self.name, force=force, state_dir=state_dir)


def _ifname(ipr: IPRoute, index: int) -> str:
    for msg in ipr.link("get", index=index):
        return msg.get("IFLA_IFNAME")
    return f"ifindex {index}"


def _ports(ipr: IPRoute, name: str) -> list[str]:
    msg = _get_link(ipr, name)
    if msg is None:
        return []
    return sorted(
        m.get("IFLA_IFNAME") for m in ipr.get_links() if m.get("IFLA_MASTER") == msg["index"]
    )


def remove_bridge(name: str, force: bool = False, state_dir: str | None = None) -> None:
    """Delete the bridge `name` (no-op when absent).

    Refuses while ports are attached unless `force`, which first deletes the
    attached `rref*` veths (their container sides go with them). With
    `state_dir`, also removes the bridge's IPAM file.
    """
    _check_ifname(name)
    with _iproute() as ipr:
        msg = _get_link(ipr, name)
        if msg is not None:
            if _link_kind(msg) != "bridge":
                raise NetworkError(f"{name} is not a bridge")
            ports = _ports(ipr, name)
            if ports and not force:
                raise NetworkError(
                    f"bridge {name} still has {len(ports)} attached port(s): {', '.join(ports)}"
                )
            for port in ports:
                if port.startswith("rref"):
                    _del_link(ipr, port)
            _del_link(ipr, name)
    if state_dir is not None:
        ipam = IPAM(state_dir, name)
        for path in (ipam.path, ipam.lock_path):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


# ---------------------------------------------------------------- IPAM


class IPAM:
    """Address allocation for one bridge, in `<state_dir>/network/<bridge>.json`.

    The file holds {"subnet", "gateway", "last", "allocations": {container id: address}}.
    Every read-modify-write happens under flock on `<bridge>.lock`, and the JSON
    is replaced atomically (write + rename). Addresses are handed out round-robin
    after the last one given, so a freed address is not reused at once.
    """

    def __init__(self, state_dir: str, bridge: str, subnet: str | None = None) -> None:
        _check_ifname(bridge)
        self.dir = os.path.join(state_dir, "network")
        self.path = os.path.join(self.dir, f"{bridge}.json")
        self.lock_path = os.path.join(self.dir, f"{bridge}.lock")
        self.network = _parse_subnet(subnet) if subnet is not None else None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
        except OSError as e:
            raise NetworkError(f"cannot create {self.dir}: {e.strerror or e}") from None
        with _flock(self.lock_path):
            yield

    def _load(self) -> dict[str, Any]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {"allocations": {}}
        except (OSError, ValueError) as e:
            raise NetworkError(f"cannot read network state {self.path}: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("allocations"), dict):
            raise NetworkError(f"cannot read network state {self.path}: not an IPAM file")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        tmp = scratch.name(self.path)
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise NetworkError(
                f"cannot write network state {self.path}: {e.strerror or e}"
            ) from None

    def allocate(self, container_id: str) -> str:
        """The container's address: its existing one, or the next free one."""
        net = self.network
        if net is None:
            raise NetworkError("cannot allocate: IPAM was opened without a subnet")
        with self._locked():
            data = self._load()
            allocs: dict[str, str] = data["allocations"]
            if data.get("subnet") not in (None, str(net)):
                if allocs:
                    raise NetworkError(
                        f"network state {self.path} is for subnet {data['subnet']}, not {net}"
                    )
                data.pop("last", None)
            if container_id in allocs:
                return allocs[container_id]
            first = int(net.network_address) + 2  # .1 is the gateway
            last_host = int(net.broadcast_address) - 1
            size = last_host - first + 1
            used = {int(ipaddress.IPv4Address(a)) for a in allocs.values()}
            try:
                start = int(ipaddress.IPv4Address(data["last"])) + 1 - first
            except (KeyError, ValueError, TypeError):
                start = 0
            for i in range(size):
                cand = first + (start + i) % size
                if cand not in used:
                    break
            else:
                raise NetworkError(f"no free address in {net}")
            address = str(ipaddress.IPv4Address(cand))
            allocs[container_id] = address
            data.update(subnet=str(net), gateway=str(net.network_address + 1), last=address)
            self._save(data)
            return address

    def free(self, container_id: str) -> str | None:
        """Release the container's address (idempotent); return it, or None if it had none."""
        if not os.path.exists(self.path):
            return None
        with self._locked():
            data = self._load()
            address = data["allocations"].pop(container_id, None)
            if address is not None:
                self._save(data)
            return address

    def lookup(self, container_id: str) -> str | None:
        with self._locked():
            return self._load()["allocations"].get(container_id)

    def allocations(self) -> dict[str, str]:
        with self._locked():
            return dict(self._load()["allocations"])

    def prune(self, live_ids: Iterable[str]) -> list[str]:
        """Free the addresses of containers not in `live_ids`; return the ids freed."""
        keep = set(live_ids)
        if not os.path.exists(self.path):
            return []
        with self._locked():
            data = self._load()
            gone = sorted(set(data["allocations"]) - keep)
            for cid in gone:
                del data["allocations"][cid]
            if gone:
                self._save(data)
            return gone


# ---------------------------------------------------------------- attach / detach


def _as_bridge(bridge: Bridge | str, state_dir: str) -> Bridge:
    """A Bridge; a bare name takes its subnet from the IPAM file, else the default."""
    if isinstance(bridge, Bridge):
        return bridge
    ipam = IPAM(state_dir, bridge)
    try:
        with open(ipam.path) as f:
            subnet = json.load(f).get("subnet") or DEFAULT_SUBNET
    except (OSError, ValueError, AttributeError):
        subnet = DEFAULT_SUBNET
    return Bridge(bridge, subnet)


def _netns_inode(pid: int | str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/net")
    return st.st_dev, st.st_ino


def attach(
    container_id: str,
    pid: int,
    bridge: Bridge | str = DEFAULT_BRIDGE,
    state_dir: str = "/var/lib/rref",
    *,
    configure: bool = False,
) -> dict[str, Any]:
    """Connect the network namespace of `pid` to `bridge`; return docker-style settings.

    Host side only by default: allocate an address, ensure the bridge, create
    the veth pair (host side `rref<id8>` enslaved and up; peer created inside
    the namespace of `pid` as `PeerIfname`, down, with MAC `MacAddress`). The
    caller then runs `configure_inside(PeerIfname, IPAddress, IPPrefixLen)` in
    the container. With `configure=True` this is done from here via
    `configure_netns` and `PeerIfname` is "eth0". Any failure undoes it all.
    """
    br = _as_bridge(bridge, state_dir)
    host = host_veth_name(container_id)
    tmp = peer_ifname(container_id)
    try:
        if _netns_inode(pid) == _netns_inode("self"):
            raise NetworkError(f"process {pid} is in the host network namespace")
    except OSError as e:
        raise NetworkError(f"cannot attach process {pid}: {os.strerror(e.errno or 0)}") from None
    ipam = IPAM(state_dir, br.name, br.subnet)
    had = ipam.lookup(container_id)
    address = ipam.allocate(container_id)
    mac = mac_for(address)
    created = False
    try:
        from pyroute2.netlink.exceptions import NetlinkError

        with _iproute() as ipr:
            index = br.ensure(ipr)
            try:
                ipr.link(
                    "add",
                    ifname=host,
                    kind="veth",
                    master=index,
                    state="up",
                    peer={"ifname": tmp, "net_ns_pid": pid, "address": mac},
                )
            except NetlinkError as e:
                if e.code == errno.EEXIST:
                    raise NetworkError(
                        f"cannot attach container {container_id[:12]}: {host} "
                        "already exists (attached twice?)"
                    ) from None
                raise _fail(f"cannot create veth {host} for process {pid}", e) from None
            created = True
        if configure:
            configure_netns(pid, tmp, address, br.prefixlen)
    except BaseException:
        if created:
            with contextlib.suppress(Exception), _iproute() as ipr:
                _del_link(ipr, host)
        if had is None:
            ipam.free(container_id)
        raise
    return {
        "IPAddress": address,
        "IPPrefixLen": br.prefixlen,
        "Gateway": br.gateway,
        "MacAddress": mac,
        "HostVeth": host,
        "Bridge": br.name,
        "PeerIfname": CONTAINER_IFNAME if configure else tmp,
    }


def detach(
    container_id: str, bridge: Bridge | str = DEFAULT_BRIDGE, state_dir: str = "/var/lib/rref"
) -> None:
    """Delete the host-side veth if it still exists and free the address. Idempotent."""
    name = bridge.name if isinstance(bridge, Bridge) else bridge
    host = host_veth_name(container_id)
    if os.path.exists(f"/sys/class/net/{host}"):  # saves the pyroute2 import when gone
        with _iproute() as ipr:
            msg = _get_link(ipr, host)
            if msg is not None and _link_kind(msg) == "veth":
                _del_link(ipr, host)
    IPAM(state_dir, name).free(container_id)


# ---------------------------------------------------------------- inside the namespace


def configure_inside(ifname_tmp: str, address: str, prefixlen: int) -> None:
    """Run INSIDE the container's network namespace: `ifname_tmp` becomes eth0 with
    `address/prefixlen`, eth0 and lo go up. Adds no route: the kernel adds the
    connected subnet route, and there is no default route. Re-running it (eth0
    already renamed) is harmless.
    """
    from pyroute2.netlink.exceptions import NetlinkError

    with _iproute() as ipr:
        try:
            idx = ipr.link_lookup(ifname=ifname_tmp)
            if idx:
                index = idx[0]
                ipr.link("set", index=index, ifname=CONTAINER_IFNAME)
            else:
                idx = ipr.link_lookup(ifname=CONTAINER_IFNAME)
                if not idx:
                    raise NetworkError(f"no interface {ifname_tmp} in this network namespace")
                index = idx[0]
            try:
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
            ipr.link("set", index=index, state="up")
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        except NetlinkError as e:
            raise _fail(f"cannot configure {CONTAINER_IFNAME} ({address}/{prefixlen})", e) from None


def configure_netns(pid: int, ifname_tmp: str, address: str, prefixlen: int) -> None:
    """`configure_inside` from the host: in a thread that setns(2)-joins `pid`'s netns."""
    import threading

    from . import syscalls

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            try:
                syscalls.setns(fd, syscalls.CLONE_NEWNET)  # this thread only
            finally:
                os.close(fd)
            configure_inside(ifname_tmp, address, prefixlen)
        except BaseException as e:
            outcome.append(e)

    t = threading.Thread(target=run, name=f"rref-netns-{pid}")
    t.start()
    t.join()
    if outcome:
        e = outcome[0]
        if isinstance(e, NetworkError):
            raise e
        raise _fail(f"cannot configure the network of process {pid}", e)
