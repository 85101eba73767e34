"""Image and disk management: rmi, image prune, tag, history, system df / prune."""

from __future__ import annotations

import contextlib
import os

from . import containers, faults, scratch
from .errors import NotFound, RrefError
from .images import ImageStore, normalize_ref
from .state import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def users(store: Store, image_id: str) -> list[tuple[str, bool]]:
    """(container id, running) of every container made from `image_id`."""
    out = []
    for cid in store.ids():
        try:
            if store.config(cid).get("Image") == image_id:
                out.append((cid, containers.is_running(containers.status(store, cid))))
        except RrefError:
            continue
    return out


def rmi(store: Store, images: ImageStore, ref: str, force: bool = False) -> list[str]:
    """docker rmi: untag a name; delete the image when no name and no container is left."""
    img = images.resolve(ref)
    by_name = normalize_ref(ref) in img.tags
    lines: list[str] = []
    if by_name and len(img.tags) > 1:
        images.untag(ref)
        return [f"Untagged: {normalize_ref(ref)}"]
    if not by_name and len(img.tags) > 1 and not force:
        raise RrefError(
            f"conflict: unable to delete {img.id[7:19]} (must be forced) - image "
            "is referenced in multiple repositories"
        )
    used = users(store, img.id)
    running = [c for c, r in used if r]
    if running:
        raise RrefError(
            f"conflict: unable to delete {ref} (cannot be forced) - image is being "
            f"used by running container {running[0][:12]}"
        )
    if used and not force:
        raise RrefError(
            f"conflict: unable to delete {ref} (must be forced) - image is being "
            f"used by stopped container {used[0][0][:12]}"
        )
    for t in img.tags:
        images.untag(t)
        lines.append(f"Untagged: {t}")
    if used:  # forced: the name goes, the image stays for its containers (docker's rule)
        return lines
    images.delete(img.id)
    lines.append(f"Deleted: {img.id}")
    lines += [f"Deleted: {d}" for d in images.gc_layers()]
    return lines


def intermediate_images(images: ImageStore) -> set[str]:
    """Images the build cache made for intermediate steps (hidden by `images` without -a)."""
    import json

    try:
        with open(os.path.join(images.root, "buildcache.json")) as f:
            return set(json.load(f).values())
    except (OSError, ValueError):
        return set()


def dangling(images: ImageStore) -> list[str]:
    tagged = set(images.repositories().values())
    return [i for i in images.image_ids() if i not in tagged]


def prune(store: Store, images: ImageStore, all_: bool = False) -> tuple[list[str], int]:
    """Remove dangling (or, with all_, every unused) image; return (deleted ids, bytes)."""
    before = images_size(images)
    used = set()
    for cid in store.ids():
        try:
            used.add(store.config(cid).get("Image"))
        except RrefError:
            continue
    victims = images.image_ids() if all_ else dangling(images)
    deleted = []
    for i in victims:
        if i in used:
            continue
        images.delete(i)
        deleted.append(i)
    images.gc_layers()
    return deleted, max(0, before - images_size(images))


def du(path: str) -> int:
    return scratch.tree_bytes(path)


def images_size(images: ImageStore) -> int:
    """Bytes of stored layers; temporaries (live or left by a killed command) are not images."""
    try:
        names = os.listdir(images.layers)
    except OSError:
        return 0
    return sum(du(os.path.join(images.layers, n)) for n in names if scratch.owner(n) is None)


def scratch_dirs(store: Store, images: ImageStore, volume_root: str) -> list[str]:
    """Every directory under the root where rref makes temporaries."""
    from . import volumes

    dirs = [store.root, store.cdir, images.root, images.layers, images.configs]
    dirs += [store.path(c) for c in store.ids()]
    dirs.append(volumes.VolumeStore(volume_root).root)
    with contextlib.suppress(OSError):
        dirs += [os.path.join(images.layers, n) for n in os.listdir(images.layers)]
    remapped = os.path.join(images.root, "remapped")
    with contextlib.suppress(OSError):
        for key in os.listdir(remapped):
            dirs.append(os.path.join(remapped, key))
            with contextlib.suppress(OSError):
                dirs += [
                    os.path.join(remapped, key, n) for n in os.listdir(os.path.join(remapped, key))
                ]
    return dirs


def stale_scratch_size(store: Store, images: ImageStore, volume_root: str) -> tuple[int, int]:
    """(count, bytes) of temporaries whose owner is gone: what a prune would reclaim."""
    found = [t for d in scratch_dirs(store, images, volume_root) for t in scratch.stale(d)]
    return len(found), sum(scratch.disk_usage(t) for t in found)


def history(images: ImageStore, ref: str) -> list[dict[str, Any]]:
    img = images.resolve(ref)
    diff_ids = list(img.config.get("rootfs", {}).get("diff_ids", []))
    rows = []
    for h in img.config.get("history", []):
        size = 0
        if not h.get("empty_layer") and diff_ids:
            d = diff_ids.pop(0)
            try:
                size = images.layer_info(d).get("content_size", 0)
            except NotFound:
                size = 0
        rows.append(
            {
                "Created": h.get("created", ""),
                "CreatedBy": h.get("created_by", ""),
                "Size": size,
                "Comment": h.get("comment", ""),
            }
        )
    rows.reverse()
    for i, r in enumerate(rows):
        r["Id"] = img.id if i == 0 else "<missing>"
    return rows


def system_df(store: Store, images: ImageStore, volume_root: str) -> list[dict[str, Any]]:
    from . import volumes

    used_images = set()
    ctr_total = ctr_active = ctr_size = ctr_reclaim = 0
    for cid in store.ids():
        try:
            cfg, st = containers.load(store, cid)
        except RrefError:
            continue
        running = containers.is_running(st)
        used_images.add(cfg.get("Image"))
        size = du(cfg.get("GraphDriver", {}).get("Data", {}).get("UpperDir") or store.path(cid))
        ctr_total += 1
        ctr_size += size
        if running:
            ctr_active += 1
        else:
            ctr_reclaim += size
    img_ids = images.image_ids()
    layer_use: dict[str, bool] = {}
    for i in img_ids:
        try:
            cfg = images.get(i).config
        except RrefError:
            continue
        for d in cfg.get("rootfs", {}).get("diff_ids", []):
            layer_use[d] = layer_use.get(d, False) or i in used_images
    img_size = images_size(images)
    unused = sum(du(os.path.dirname(images.layer_dir(d))) for d, u in layer_use.items() if not u)
    vs = volumes.VolumeStore(volume_root)
    vol_names = vs.names()
    vol_used = {n for n in vol_names if volumes.in_use(store, n)}
    vol_sizes = {n: du(vs.path(n)) for n in vol_names}
    cache = build_cache_size(images)
    left = stale_scratch_size(store, images, volume_root)  # reclaimable by prune, not images
    cache = (cache[0] + left[0], cache[1] + left[1])
    return [
        {
            "Type": "Images",
            "Total": len(img_ids),
            "Active": sum(1 for i in img_ids if i in used_images),
            "Size": img_size,
            "Reclaimable": unused,
        },
        {
            "Type": "Containers",
            "Total": ctr_total,
            "Active": ctr_active,
            "Size": ctr_size,
            "Reclaimable": ctr_reclaim,
        },
        {
            "Type": "Local Volumes",
            "Total": len(vol_names),
            "Active": len(vol_used),
            "Size": sum(vol_sizes.values()),
            "Reclaimable": sum(s for n, s in vol_sizes.items() if n not in vol_used),
        },
        {
            "Type": "Build Cache",
            "Total": cache[0],
            "Active": 0,
            "Size": cache[1],
            "Reclaimable": cache[1],
        },
    ]


def build_cache_size(images: ImageStore) -> tuple[int, int]:
    """(entries, bytes) of the build cache index; layers are counted with images."""
    path = os.path.join(images.root, "buildcache.json")
    try:
        import json

        with open(path) as f:
            entries = json.load(f)
    except (OSError, ValueError):
        return 0, 0
    return len(entries), os.path.getsize(path)


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}"


def system_prune(
    store: Store, images: ImageStore, root: str, all_: bool, volumes_too: bool
) -> list[str]:
    """docker system prune: stopped containers, then images, build cache, volumes."""
    from . import volumes

    out: list[str] = []
    for cid in store.ids():
        try:
            st = containers.load(store, cid)[1]
        except RrefError:
            continue
        if st.get("Status") in ("exited", "created", "dead") and not containers.is_running(st):
            try:
                containers.remove(store, cid)
            except NotFound:
                continue  # removed meanwhile, or still being created
            out.append(f"Deleted Container: {cid}")
            faults.point("prune.container")
    count, scratch_freed = scratch.reclaim(*scratch_dirs(store, images, root))
    if count:
        out.append(f"Deleted {count} temporaries left by interrupted commands")
    cache = os.path.join(images.root, "buildcache.json")
    if os.path.exists(cache):
        os.unlink(cache)
        out.append("Deleted Build Cache")
    deleted, freed = prune(store, images, all_)
    out += [f"Deleted Image: {d}" for d in deleted]
    if volumes_too:
        vs = volumes.VolumeStore(root)
        for n in vs.names():
            if vs.get(n).get("Anonymous") and not volumes.in_use(store, n):
                vs.remove(n, [])
                out.append(f"Deleted Volume: {n}")
    out.append(f"Total reclaimed space: {human(freed + scratch_freed)}")
    return out
