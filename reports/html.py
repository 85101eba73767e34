"""matrix.html: the morning page, rendered from the matrix document.

Why plain HTML: it must open from an artifact, a Pages site or a phone without running
anything -- no JavaScript, one file with its CSS inline, the table scrolls sideways on a
small screen while the behaviour column stays put. Every cell links to its test in the
Allure report; changed cells carry a marker and the verdict they had before.
"""

from __future__ import annotations

from html import escape
from typing import Any

from reports.history import KINDS
from reports.model import LABELS, SHORT, VERDICTS

CSS = """
body{font:14px/1.35 system-ui,sans-serif;margin:0;padding:8px;color:#222}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .3em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 5px;vertical-align:top}
.wrap{overflow-x:auto;max-width:100%}
.m th.b,.m td.b{position:sticky;left:0;background:#fff;z-index:1;min-width:11em;max-width:22em}
.m thead th{background:#f4f4f4;font-weight:600;font-size:.85em}
.m td.c{text-align:center;min-width:4.5em;font-size:.9em}
.m td.c a{color:inherit;text-decoration:none;display:block}
.m tr.area th{background:#e8eef7;text-align:left}
.pass{background:#d8f3d8}.fail{background:#f7b9b5;font-weight:700}.broken{background:#f9dc9c}
.unsupported{background:#e6e6e6;color:#555}.xfail{background:#dcd3f3}.skipped{background:#f4f4f4}
.none{color:#aaa}.fail.policy{background:#f6d6f0;font-weight:400}
.chg{outline:3px solid #d0021b;outline-offset:-3px}
.chg .mark{color:#d0021b;font-weight:700}
small{display:block;font-size:.75em;color:#444;overflow-wrap:anywhere}
.lvl{font-size:.75em;color:#555}.meta td,.meta th{font-size:.85em}
ul.changes{padding-left:1.2em}svg.spark{vertical-align:middle}
"""


def _sparkline(values: list[float | None], width: int = 90, height: int = 20) -> str:
    pts = [v for v in values if v is not None]
    if not pts:
        return ""
    n = len(values)
    step = width / max(n - 1, 1)
    coords = [
        f"{i * step:.1f},{height - 2 - v * (height - 4):.1f}"
        for i, v in enumerate(values)
        if v is not None
    ]
    last = coords[-1].split(",")
    title = " → ".join(f"{v:.0%}" for v in pts)
    return (
        f'<svg class="spark" width="{width}" height="{height}" role="img">'
        f"<title>pass rate: {escape(title)}</title>"
        f'<polyline fill="none" stroke="#2a7" stroke-width="1.5" points="{" ".join(coords)}"/>'
        f'<circle cx="{last[0]}" cy="{last[1]}" r="2" fill="#2a7"/></svg>'
    )


def _header(doc: dict[str, Any]) -> list[str]:
    out = [
        "<h1>Conformance matrix</h1>",
        f"<p>{escape(doc['created'])} · harness {escape(', '.join(doc['harness_versions']))}"
        ' · <a href="allure/index.html">Allure report</a> · <a href="matrix.json">JSON</a>'
        ' · <a href="matrix.md">Markdown</a></p>',
        '<div class="wrap"><table class="meta"><thead><tr><th>runner</th><th>distro</th>'
        "<th>kernel</th><th>cgroups</th><th>v1 controllers</th><th>v2 controllers</th>"
        "<th>probes</th><th>run</th></tr></thead><tbody>",
    ]
    for r in doc["runners"]:
        cg = r.get("cgroup_controllers") or {}
        v1 = " ".join(c for c, v in cg.items() if v == "v1") or "-"
        v2 = " ".join(c for c, v in cg.items() if v == "v2") or "-"
        cells = [r["label"], r.get("distro"), r.get("kernel"), r.get("cgroup_mode"), v1, v2]
        cells += [r.get("probe_backend"), r.get("created")]
        out.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    out.append("</tbody></table></div>")
    return out


def _columns(doc: dict[str, Any]) -> list[str]:
    out = [
        "<h2>Per column</h2>",
        '<div class="wrap"><table class="meta" id="counts"><thead><tr><th>runtime @ runner</th>'
        "<th>version</th>",
    ]
    out += [f'<th class="{v}">{escape(LABELS[v])}</th>' for v in VERDICTS]
    out.append("<th>pass rate</th><th>trend</th></tr></thead><tbody>")
    trend = doc.get("trend") or {}
    for c in doc["columns"]:
        rate = "-" if c["pass_rate"] is None else f"{c['pass_rate']:.0%}"
        row = [f'<tr data-col="{escape(c["key"])}"><th>{escape(c["key"])}</th>']
        row.append(f"<td>{escape(str(c['version']))}</td>")
        row += [f'<td class="n-{v}">{c["counts"][v]}</td>' for v in VERDICTS]
        row.append(f"<td>{rate}</td><td>{_sparkline(trend.get(c['key'], []))}</td></tr>")
        out.append("".join(row))
    out.append("</tbody></table></div>")
    return out


def _changes(doc: dict[str, Any]) -> list[str]:
    ch = doc.get("changes") or {}
    against = ch.get("against")
    if not against:
        return ["<h2>What changed</h2><p>No earlier run in the history to compare with.</p>"]
    items = ch.get("items") or []
    out = [
        f"<h2>What changed</h2><p>Against {escape(str(ch.get('against_created') or against))}: "
        + (
            ", ".join(f"{ch['counts'][k]} {escape(k)}" for k in KINDS if ch["counts"].get(k))
            or "nothing"
        )
        + ".</p>"
    ]
    if items:
        out.append('<ul class="changes" id="changes">')
        for i in items:
            out.append(
                f"<li><b>{escape(i['kind'])}</b> {escape(i['id'])} on {escape(i['column'])}: "
                f"{escape(str(i['before']))} → {escape(i['after'])}</li>"
            )
        out.append("</ul>")
    return out


def _cell(cell: dict[str, Any] | None, policy: bool = False) -> str:
    if cell is None:
        return '<td class="c none">·</td>'
    v = cell["verdict"]
    cls = f"c {v}" + (" chg" if cell.get("change") else "")
    tip = LABELS[v]
    if policy and v == "fail":
        cls += " policy"  # stricter than any reference: a difference, not a defect
        tip += " (policy: rref's choice, not a standard's)"
    note = ""
    if v == "unsupported" and cell.get("missing"):
        tip += f": missing {cell['missing']}"
        note = f"<small>{escape(cell['missing'][:40])}</small>"
    elif v == "xfail":
        tip += f": {cell.get('reason', '')}"
        note = f"<small>{escape(cell.get('reason', '')[:60])}</small>"
    elif cell.get("reason"):
        tip += f": {cell['reason']}"
    mark = ""
    if cell.get("change"):
        tip += f" ({cell['change']}; was {cell.get('before') or '-'})"
        mark = '<span class="mark">● </span>'
    body = f"{mark}{SHORT[v]}"
    if cell.get("href"):
        body = f'<a href="{escape(cell["href"])}">{body}</a>'
    up = ""
    if cell.get("upstream"):
        up = f'<small><a href="{escape(cell["upstream"])}">upstream</a></small>'
    return f'<td class="{cls}" title="{escape(tip)}">{body}{note}{up}</td>'


def _matrix(doc: dict[str, Any]) -> list[str]:
    cols = doc["columns"]
    out = ['<h2>Behaviours</h2><div class="wrap"><table class="m" id="matrix"><thead><tr>']
    out.append('<th class="b">behaviour</th>')
    for c in cols:
        out.append(
            f'<th data-col="{escape(c["key"])}">{escape(c["runtime"])}<br>'
            f"{escape(c['runner'])}<br><span class=lvl>{escape(str(c['kernel']))}<br>"
            f"cgroup {escape(str(c['cgroup_mode']))} ({escape(str(c.get('lane') or 'host'))})"
            "</span></th>"
        )
    out.append("</tr></thead>")
    span = len(cols) + 1
    for area in doc["areas"]:
        if not area["rows"]:
            continue
        out.append(
            f'<tbody><tr class="area"><th colspan="{span}">{escape(area["area"])}: '
            f"{escape(area['title'])}</th></tr>"
        )
        for row in area["rows"]:
            title = escape(row["title"])
            if row.get("link"):
                title = f'<a href="{escape(row["link"])}">{title}</a>'
            shown = row.get("basis") in ("policy", "derived")
            basis = f" · {escape(row['basis'])}" if shown else ""
            line = [
                f'<tr id="{escape(row["id"])}"><td class="b"><b>{escape(row["id"])}</b> '
                f"<span class=lvl>{escape(row['level'])}{basis}</span><br>{title}</td>"
            ]
            policy = row.get("basis") == "policy"
            line += [_cell(row["cells"].get(c["key"]), policy) for c in cols]
            line.append("</tr>")
            out.append("".join(line))
        out.append("</tbody>")
    out.append("</table></div>")
    return out


def _legend() -> str:
    items = " ".join(
        f'<span class="{v}" style="padding:0 4px">{SHORT[v]} = {escape(LABELS[v])}</span>'
        for v in VERDICTS
    )
    return (
        f'<p class="lvl">{items} · <span class="chg" style="padding:0 4px">● changed</span>'
        ' · <span class="fail policy" style="padding:0 4px">policy miss</span>'
        " · · = no test</p>"
    )


def render(doc: dict[str, Any]) -> str:
    """The whole page as one string."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Conformance matrix {escape(doc['created'])}</title><style>{CSS}</style>",
        "</head><body>",
        *_header(doc),
        *_columns(doc),
        *_changes(doc),
        _legend(),
        *_matrix(doc),
        "</body></html>",
    ]
    return "\n".join(parts)
