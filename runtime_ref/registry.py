"""`rref pull` / `rref push`: a small OCI distribution client over plain HTTP.

References follow docker: `127.0.0.1:5000/name:tag` (a first component with a
dot or a port, or `localhost`, is the registry host; anything else would be
docker.io). Pull asks for OCI and docker schema2 manifests and indexes, picks
linux/<this arch> from an index, verifies every document and blob against its
digest (layers also against the config's diff_ids) and skips layers the store
already has. Push uploads gzip layers and the config monolithically (HEAD, then
POST + PUT ?digest=) and then PUTs an OCI manifest.

This environment allows network traffic on loopback only, so the client talks
only to the registries of LOOPBACK_ALLOWLIST, over http://, and refuses every
other host before any name is resolved or any packet is sent. Redirects are held
to the same rule, and proxies from the environment are ignored. Every socket
operation times out after TIMEOUT seconds.
"""

from __future__ import annotations

import os

from .errors import EXIT_FAILED, NotFound, RrefError
from .oci_layout import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_JSON,
    MT_DOCKER_LIST,
    MT_DOCKER_MANIFEST,
    MT_INDEX,
    MT_LAYER_GZIP,
    MT_LAYER_ZSTD,
    MT_MANIFEST,
    ArchiveError,
    add_layer_blob,
    check_descriptor,
    config_diff_ids,
    hash_stream,
    make_manifest,
    parse_json,
    parse_manifest,
    parse_ref,
    pick_platform,
    sha256_of,
    verify,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from .images import ImageStore

# The only registries rref may reach: loopback networks and the name `localhost`
# (which must resolve to loopback too). A rule of this environment, not of OCI.
LOOPBACK_ALLOWLIST = ("127.0.0.0/8", "::1/128", "localhost")
LOOPBACK_REFUSAL = "rref only talks to registries on loopback here"
TIMEOUT = 10.0
ACCEPT = ", ".join((MT_MANIFEST, MT_INDEX, MT_DOCKER_MANIFEST, MT_DOCKER_LIST))
_ERR_BODY = 64 << 10


def split_host(host: str) -> tuple[str, int | None]:
    """`127.0.0.1:5000` -> ("127.0.0.1", 5000); `[::1]:5000` -> ("::1", 5000)."""
    if host.startswith("["):
        addr, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif host.count(":") > 1:
        addr, port = host, ""  # a bare IPv6 address
    else:
        addr, _, port = host.partition(":")
    if port and not (port.isdigit() and int(port) < 65536):
        raise ValueError(f"bad port in {host!r}")
    return addr, int(port) if port else None


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name, optionally with :port) is on the allowlist."""
    import ipaddress

    try:
        addr, _ = split_host(host)
    except ValueError:
        return False
    if addr.lower() in LOOPBACK_ALLOWLIST:
        return True
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return False  # any other name: not resolved, refused
    return any(ip in ipaddress.ip_network(n) for n in LOOPBACK_ALLOWLIST if "/" in n)


def _resolves_to_loopback(addr: str, port: int | None) -> bool:
    """`localhost` is looked up locally (/etc/hosts); every answer must be loopback."""
    import ipaddress
    import socket

    try:
        infos = socket.getaddrinfo(addr, port or 80, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(i[4][0]).split("%")[0]).is_loopback for i in infos
    )


def target(ref: str, verb: str) -> tuple[str, str, str | None, str | None]:
    """(host, repository, tag, digest) of a registry reference on loopback."""
    host, repo, tag, digest = parse_ref(ref)
    if host is None or not is_loopback(host):
        raise RrefError(
            f"{verb} {ref}: {LOOPBACK_REFUSAL} ({host or 'docker.io'} is not "
            "on 127.0.0.0/8, ::1 or localhost)",
            EXIT_FAILED,
        )
    return host, repo, tag, digest


class _Client:
    """Requests to one repository of one loopback registry."""

    def __init__(self, host: str, repo: str, verb: str, ref: str) -> None:
        import urllib.request

        self.host, self.repo, self.verb, self.ref = host, repo, verb, ref
        self.base = f"http://{host}"
        check = self.check_url

        class Redirects(urllib.request.HTTPRedirectHandler):
            def redirect_request(
                self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str
            ) -> Any:
                check(newurl)
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), Redirects)

    def fail(self, message: str) -> RrefError:
        return RrefError(" ".join(f"{self.verb} {self.ref}: {message}".split()), EXIT_FAILED)

    def check_url(self, url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.netloc or "@" in parts.netloc:
            raise self.fail(f"refusing to follow {url!r}: only http:// on loopback")
        if not is_loopback(parts.netloc):
            raise self.fail(f"{LOOPBACK_REFUSAL} (refusing to follow {parts.netloc})")
        addr, port = split_host(parts.netloc)
        if addr.lower() == "localhost" and not _resolves_to_loopback(addr, port):
            raise self.fail(f"{LOOPBACK_REFUSAL} (localhost does not resolve to loopback)")
        return url

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repo}/{path}"

    def request(
        self,
        method: str,
        url: str,
        data: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> Any:
        """The response of a request whose status is in `ok` (the caller closes it)."""
        import urllib.error
        import urllib.request

        req = urllib.request.Request(
            self.check_url(url), data=data, headers=headers or {}, method=method
        )
        try:
            resp = self.opener.open(req, timeout=TIMEOUT)
        except urllib.error.HTTPError as e:
            if e.code in ok:
                return e
            with e:
                raise self.fail(_error_text(e)) from None
        except urllib.error.URLError as e:
            reason = getattr(e.reason, "strerror", None) or str(e.reason)
            raise self.fail(f"cannot reach registry {self.host}: {reason}") from None
        except TimeoutError:
            raise self.fail(f"registry {self.host} timed out after {TIMEOUT:g}s") from None
        except OSError as e:
            raise self.fail(f"registry {self.host}: {e.strerror or e}") from None
        if resp.status not in ok:
            resp.close()
            raise self.fail(f"unexpected HTTP {resp.status} from {method} {url}")
        return resp

    def read(self, resp: Any, limit: int) -> bytes:

        try:
            with resp:
                data: bytes = resp.read(limit + 1)
        except TimeoutError:
            raise self.fail(f"registry {self.host} timed out after {TIMEOUT:g}s") from None
        except OSError as e:
            raise self.fail(f"registry {self.host}: {e}") from None
        if len(data) > limit:
            raise self.fail(f"response larger than {limit} bytes")
        return data

    # -- pull side --

    def manifest(self, ref: str) -> tuple[bytes, str | None, str | None]:
        """(raw manifest, media type, digest header) for a tag or digest."""
        resp = self.request("GET", self.url(f"manifests/{ref}"), headers={"Accept": ACCEPT})
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip() or None
        header = resp.headers.get("Docker-Content-Digest")
        return self.read(resp, MAX_JSON), ctype, header

    def small_blob(self, desc: dict[str, Any], what: str) -> bytes:
        digest, size = check_descriptor(desc, what)
        if size > MAX_JSON:
            raise self.fail(f"{what} blob {digest} is too large ({size} bytes)")
        data = self.read(self.request("GET", self.url(f"blobs/{digest}")), size)
        verify(digest, size, sha256_of(data), len(data), what)
        return data

    def download(self, desc: dict[str, Any], dest: Any, what: str) -> None:
        """Stream a blob into the open file `dest`, checking its size and digest."""

        digest, size = check_descriptor(desc, what)
        resp = self.request("GET", self.url(f"blobs/{digest}"))

        class Tee:
            def read(self, n: int) -> bytes:
                chunk: bytes = resp.read(n)
                dest.write(chunk)
                return chunk

        try:
            with resp:
                got, n = hash_stream(Tee(), size)  # type: ignore[arg-type]
        except TimeoutError:
            raise self.fail(f"registry {self.host} timed out after {TIMEOUT:g}s") from None
        except OSError as e:
            raise self.fail(f"downloading {digest}: {e}") from None
        verify(digest, size, got, n, what)

    # -- push side --

    def has_blob(self, digest: str) -> bool:
        resp = self.request("HEAD", self.url(f"blobs/{digest}"), ok=(200, 404))
        resp.close()
        return bool(resp.getcode() == 200)

    def upload(self, digest: str, size: int, body: Any) -> None:
        """Monolithic upload: POST for a session, PUT the bytes to it with ?digest=."""
        from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

        resp = self.request(
            "POST", self.url("blobs/uploads/"), data=b"", headers={"Content-Length": "0"}, ok=(202,)
        )
        resp.close()
        location = resp.headers.get("Location")
        if not location:
            raise self.fail("registry gave no upload location")
        parts = urlsplit(urljoin(self.url("blobs/uploads/"), location))
        query = "&".join(q for q in (parts.query, urlencode({"digest": digest})) if q)
        put = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
        self.request(
            "PUT",
            put,
            data=body,
            ok=(201,),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
        ).close()


def _error_text(e: Any) -> str:
    """The registry's own error messages in one line, else the HTTP status."""
    import json

    try:
        doc = json.loads(e.read(_ERR_BODY) or b"{}")
    except (ValueError, OSError):
        doc = {}
    errors = doc.get("errors") if isinstance(doc, dict) else None
    msgs = []
    for err in errors if isinstance(errors, list) else []:
        if isinstance(err, dict):
            msg = str(err.get("message") or err.get("code") or "").strip()
            if msg:
                msgs.append(msg)
    if e.code == 401 and not msgs:
        msgs.append("authentication required (rref does not log in to registries)")
    text = "; ".join(msgs) if msgs else f"HTTP {e.code} {e.reason}"
    return " ".join(text.split())


def _local_name(host: str, repo: str, tag: str) -> str:
    return f"{host}/{repo}:{tag}"


def pull(store: ImageStore, ref: str, log: Callable[[str], None] | None = None) -> str:
    """Pull an image from a loopback registry into the store; return its image id."""
    host, repo, tag, digest = target(ref, "pull")
    c = _Client(host, repo, "pull", ref)
    try:
        return _pull(store, c, host, repo, tag, digest, log or (lambda _s: None))
    except ArchiveError as e:  # a bad document or blob is a failed request here
        raise c.fail(str(e)) from None


def _pull(
    store: ImageStore,
    c: _Client,
    host: str,
    repo: str,
    tag: str | None,
    digest: str | None,
    log: Callable[[str], None],
) -> str:
    raw, ctype, header = c.manifest(digest or tag or "latest")
    mdigest = sha256_of(raw)
    if digest and mdigest != digest:
        raise c.fail(f"manifest digest mismatch: asked for {digest}, got {mdigest}")
    if header and header != mdigest:
        raise c.fail(f"manifest digest mismatch: registry says {header}, content is {mdigest}")
    doc = parse_json(raw, "manifest")
    kind = doc.get("mediaType") or ctype
    if kind in INDEX_TYPES or (kind not in MANIFEST_TYPES and "manifests" in doc):
        d = pick_platform(doc, "manifest list")
        want, _ = check_descriptor(d, "manifest list entry")
        raw, ctype, _ = c.manifest(want)
        mdigest = sha256_of(raw)
        if mdigest != want:
            raise c.fail(f"manifest digest mismatch: asked for {want}, got {mdigest}")
    config, layers = parse_manifest(raw, "manifest")
    cfg_raw = c.small_blob(config, "config")
    diff_ids = config_diff_ids(cfg_raw, "config", len(layers))
    for i, (layer, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
        short = layer["digest"][7:19]
        if store.has_layer(diff_id):
            log(f"{short}: Already exists")
            continue
        if layer.get("mediaType") == MT_LAYER_ZSTD:
            raise c.fail(f"layer {i}: zstd-compressed layers are not supported")
        _fetch_layer(store, c, layer, diff_id, f"layer {i}")
        log(f"{short}: Pull complete")
    image_id = store.add_image(cfg_raw)
    log(f"Digest: {mdigest}")
    if tag:
        name = _local_name(host, repo, tag)
        was = store.repositories().get(name)
        store.tag(image_id, name)
        log(
            f"Status: {'Image is up to date' if was == image_id else 'Downloaded newer image'}"
            f" for {name}"
        )
    return image_id


def _fetch_layer(
    store: ImageStore, c: _Client, desc: dict[str, Any], diff_id: str, what: str
) -> None:
    import tempfile

    store.ensure()
    fd, tmp = tempfile.mkstemp(prefix=".rref-pull-", dir=store.root)
    try:
        with os.fdopen(fd, "w+b") as f:
            c.download(desc, f, what)
            f.seek(0)
            add_layer_blob(store, f, diff_id, what)
    finally:
        os.unlink(tmp)


def push(store: ImageStore, ref: str, log: Callable[[str], None] | None = None) -> str:
    """Push a local image named `ref` to its loopback registry; return the manifest digest."""
    host, repo, tag, digest = target(ref, "push")
    c = _Client(host, repo, "push", ref)
    log = log or (lambda _s: None)
    if digest or not tag:
        raise c.fail("push needs a tag, not a digest")
    name = _local_name(host, repo, tag)
    try:
        img = store.resolve(name)
    except NotFound:
        raise c.fail(f"An image does not exist locally with the tag: {name}") from None
    raw = store.config_bytes(img.id)
    layers = []
    for diff_id in config_diff_ids(raw, "config", None):
        d, size, path = store.compressed_blob(diff_id)
        layers.append({"mediaType": MT_LAYER_GZIP, "digest": d, "size": size})
        if c.has_blob(d):
            log(f"{d[7:19]}: Layer already exists")
            continue
        with open(path, "rb") as body:
            c.upload(d, size, body)
        log(f"{d[7:19]}: Pushed")
    if not c.has_blob(img.id):
        c.upload(img.id, len(raw), raw)
    manifest = make_manifest(img.id, len(raw), layers)
    mdigest = sha256_of(manifest)
    resp = c.request(
        "PUT",
        c.url(f"manifests/{tag}"),
        data=manifest,
        ok=(201,),
        headers={"Content-Type": MT_MANIFEST, "Content-Length": str(len(manifest))},
    )
    resp.close()
    header = resp.headers.get("Docker-Content-Digest")
    if header and header != mdigest:
        raise c.fail(f"registry stored the manifest as {header}, expected {mdigest}")
    log(f"{tag}: digest: {mdigest} size: {len(manifest)}")
    return mdigest
