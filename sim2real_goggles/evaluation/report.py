"""Bag evaluation reports: ``report.md`` and a self-contained ``report.html``, with plots.

The html needs nothing but the file: CSS is inline and the plots (per-frame metrics over time,
the contact sheet) are PNGs embedded as ``data:`` URIs. The markdown shows the same tables and
links the same PNGs, written beside it. Plots are drawn with matplotlib's Agg canvas on
:class:`matplotlib.figure.Figure` objects (no pyplot, no global backend switch).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim2real_goggles import __version__


@dataclass(frozen=True)
class MetricInfo:
    label: str
    unit: str
    better: str | None
    """"higher", "lower", or None (no best value highlighted)"""
    help: str
    goggles_only: bool = False
    """best value chosen among translators only: no goggles (the identity) wins it trivially"""


METRICS: dict[str, MetricInfo] = {
    "sem_miou": MetricInfo(
        "sem mIoU",
        "0–1",
        "higher",
        "mean IoU of the frozen sim segmenter on the translation against the ground-truth labels "
        "(the FCN score); the primary translation metric",
    ),
    "target_iou": MetricInfo(
        "target IoU", "0–1", "higher", "IoU of the target class alone: what navigation steers towards"
    ),
    "psnr": MetricInfo(
        "PSNR", "dB", "higher", "peak signal-to-noise ratio against the paired sim render (capped at 100 dB)"
    ),
    "ssim": MetricInfo("SSIM", "−1–1", "higher", "structural similarity against the paired sim render"),
    "fd_seg": MetricInfo(
        "FD (segmenter features)",
        "",
        "lower",
        "Fréchet distance between segmenter features of the translations and of sim frames (FID-like)",
    ),
    "flicker": MetricInfo(
        "flicker vs reference",
        "grey levels",
        "lower",
        "mean |(y_t − y_t−1) − (r_t − r_t−1)|: how much the translation's frame-to-frame change departs "
        "from the paired sim render's",
    ),
    "confidence": MetricInfo(
        "segmenter confidence", "0–1", "higher", "mean max-softmax of the segmenter on the translation"
    ),
    "confident_fraction": MetricInfo(
        "confident pixels", "0–1", "higher", "fraction of pixels the segmenter classifies with max-softmax > 0.9"
    ),
    "entropy": MetricInfo("segmenter entropy", "bits", "lower", "mean per-pixel entropy of the segmenter's softmax"),
    "temporal_diff": MetricInfo(
        "temporal change", "grey levels", None, "mean |y_t − y_t−1| between consecutive translated frames"
    ),
    "flicker_ratio": MetricInfo(
        "temporal change ratio",
        "×",
        None,
        "temporal change of the translation over that of the input: 1 = as much as the camera image, "
        "> 1 = the goggles add flicker, ≪ 1 = they may freeze or flatten the scene",
    ),
    "shift_err": MetricInfo(
        "shift error",
        "grey levels",
        "lower",
        "mean |G(shift(x)) − shift(G(x))| on the overlap for random shifts up to 1/8 of the image "
        "(0 for no goggles by definition, so its best value is among the translators)",
        goggles_only=True,
    ),
}

SPEED: dict[str, MetricInfo] = {
    "fps": MetricInfo("translation", "frames/s", "higher", "frames over the total translation time"),
    "latency_p50": MetricInfo("latency p50", "ms/frame", "lower", "median per-frame latency (batch time / batch)"),
    "latency_p95": MetricInfo("latency p95", "ms/frame", "lower", "95th percentile per-frame latency"),
    "pipeline_fps": MetricInfo("read + translate", "frames/s", "higher", "frames over reading plus translation time"),
    "throughput_vs_read": MetricInfo(
        "vs read-only", "×", "higher", "read + translate throughput over read-only throughput (1 = free)"
    ),
}

SERIES: dict[str, tuple[str, str]] = {
    "miou": ("per-frame mIoU", "0–1"),
    "flicker": ("flicker vs reference", "grey levels"),
    "temporal_diff": ("temporal change |y_t − y_t−1|", "grey levels"),
    "confidence": ("segmenter confidence", "0–1"),
}


# ----------------------------------------------------------------------------- plots


def _png(fig: Any) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def timeline_png(time_s: np.ndarray, series: dict[str, dict[str, np.ndarray]]) -> bytes | None:
    """Per-frame metrics over time, one panel per metric, one line per entry (None: nothing)."""
    from matplotlib.figure import Figure

    panels = [key for key in SERIES if any(key in s for s in series.values())]
    if not panels or len(time_s) < 2:
        return None
    fig = Figure(figsize=(9, 2.3 * len(panels)))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, key in zip(axes, panels):
        for name, per_frame in series.items():
            if key not in per_frame:
                continue
            values = per_frame[key]
            x = time_s[-len(values) :]  # differences of consecutive frames belong to the later one
            ax.plot(x, values, ".-", markersize=3, linewidth=1, label=name)
        title, unit = SERIES[key]
        ax.set_title(title, fontsize=10, loc="left")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=min(4, len(series)))
    axes[-1].set_xlabel("time since the first frame (s, header stamps)")
    fig.tight_layout()
    return _png(fig)


def contact_sheet_png(columns: Sequence[tuple[str, np.ndarray]], row_labels: Sequence[str]) -> bytes:
    """A grid of images: one row per sampled frame, one labelled column per image kind."""
    from matplotlib.figure import Figure

    rows, cols = len(row_labels), len(columns)
    fig = Figure(figsize=(1.45 * cols + 0.6, 1.45 * rows + 0.4))
    axes = fig.subplots(rows, cols, squeeze=False)
    for c, (label, images) in enumerate(columns):
        axes[0, c].set_title(label, fontsize=8)
        for r in range(rows):
            ax = axes[r, c]
            ax.imshow(images[r], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=7)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return _png(fig)


# ----------------------------------------------------------------------------- tables


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _speed_value(entry: dict[str, Any], key: str) -> float | None:
    if key.startswith("latency_"):
        latency = entry.get("latency_ms")
        return None if latency is None else latency[key.split("_")[1]]
    return entry.get(key)


def _rows(
    report: dict[str, Any], info: dict[str, MetricInfo], speed: bool
) -> list[tuple[str, MetricInfo, list[Any], set[int]]]:
    """(key, info, values per entry, indices of the best values) for the rows that have values."""
    entries = report["translators"]
    out = []
    for key, meta in info.items():
        values = [_speed_value(e, key) if speed else e.get(key) for e in entries.values()]
        if any(v is not None for v in values):
            ranked = [None if meta.goggles_only and name == "none" else v for name, v in zip(entries, values)]
            out.append((key, meta, values, _best(ranked, meta.better)))
    return out


def _best(values: Sequence[Any], better: str | None) -> set[int]:
    """Indices of the best of two or more values."""
    present = [v for v in values if v is not None]
    if not better or len(present) < 2:
        return set()
    target = max(present) if better == "higher" else min(present)
    return {i for i, v in enumerate(values) if v == target}


def _per_class(report: dict[str, Any]) -> tuple[list[str], dict[str, list[Any]]]:
    entries = report["translators"]
    classes: list[str] = next((list(e["per_class_iou"]) for e in entries.values() if e.get("per_class_iou")), [])
    return classes, {c: [(e.get("per_class_iou") or {}).get(c) for e in entries.values()] for c in classes}


SHEET_CAPTION = (
    "Rows: evenly spaced frames. Segmentation colours: floor blue, wall yellow, obstacle cyan, target magenta; "
    "black: ignored, or no reference / labels paired with that frame."
)


def _bag_line(report: dict[str, Any]) -> str:
    size = report["size"]
    return (
        f"{report['frames']} frames of {report['topic']} evaluated at {size}×{size}, "
        f"{report['skipped']} skipped; bag read at {_fmt(report['read_fps'])} frames/s"
    )


# ----------------------------------------------------------------------------- markdown


def render_markdown(report: dict[str, Any], images: dict[str, str]) -> str:
    """The report as GitHub-flavoured markdown; ``images``: title -> file name beside it."""
    names = list(report["translators"])
    head = "| metric | unit | " + " | ".join(names) + " |\n|---|---|" + "---:|" * len(names) + "\n"
    lines = [f"# Goggles bag evaluation: {Path(report['bag']).name}", "", _bag_line(report), ""]
    for w in report["warnings"]:
        lines.append(f"> **Warning:** {w}")
    if report["warnings"]:
        lines.append("")
    for title, info, speed in (("Summary", METRICS, False), ("Speed", SPEED, True)):
        rows = _rows(report, info, speed)
        if not rows:
            continue
        lines += [f"## {title}", "", head.rstrip("\n")]
        for _, meta, values, best in rows:
            cells = [f"**{_fmt(v)}**" if i in best else _fmt(v) for i, v in enumerate(values)]
            lines.append(f"| {meta.label} | {meta.unit} | " + " | ".join(cells) + " |")
        lines.append("")
    classes, per_class = _per_class(report)
    if classes:
        lines += ["## Per-class IoU", "", "| class | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for c in classes:
            label = f"**{c}** (navigation target)" if c == "target" else c
            best = _best(per_class[c], "higher")
            cells = [f"**{_fmt(v)}**" if i in best else _fmt(v) for i, v in enumerate(per_class[c])]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    for title, file in images.items():
        lines += [f"## {title}", "", f"![{title}]({file})", ""]
        if file == "contact_sheet.png":
            lines += [SHEET_CAPTION, ""]
    lines += ["## Metrics", ""]
    for key, meta in {**METRICS, **SPEED}.items():
        lines.append(f"- **{meta.label}** ({key}): {meta.help}.")
    if report["fd_seg_reference"]:
        lines.append(f"- fd_seg compares with: {report['fd_seg_reference']}.")
    if report["metrics_unavailable"]:
        lines += ["", "## Not computed", ""]
        lines += [f"- {k}: {why}" for k, why in report["metrics_unavailable"].items()]
    lines += ["", f"_sim2real_goggles {__version__}, `goggles eval-bag`_", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- html

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;max-width:1100px;
margin:2em auto;padding:0 1.2em}
h1{font-size:1.6em;margin-bottom:.1em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #dde2ea}
.sub{color:#5a6475;margin-top:0}
table{border-collapse:collapse;margin:.6em 0}th,td{padding:.3em .8em;border-bottom:1px solid #e6e9ef}
th{background:#f4f6fa;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.unit{color:#6b7485;font-size:.9em}td.best{background:#dff3e4;font-weight:600}
tr.target td{background:#fff6e0}tr.target td.best{background:#dff3e4}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5em .9em;margin:.5em 0}
img{max-width:100%;border:1px solid #e6e9ef}dt{font-weight:600}dd{margin:0 0 .5em 1.2em;color:#39404d}
footer{margin-top:3em;color:#8a93a3;font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _html_table(report: dict[str, Any], info: dict[str, MetricInfo], speed: bool) -> str:
    rows = _rows(report, info, speed)
    if not rows:
        return ""
    names = list(report["translators"])
    out = ["<table><tr><th>metric</th><th>unit</th>" + "".join(f"<th>{_e(n)}</th>" for n in names) + "</tr>"]
    for key, meta, values, best in rows:
        cells = "".join(
            f'<td class="num{" best" if i in best else ""}">{_e(_fmt(v))}</td>' for i, v in enumerate(values)
        )
        cls = ' class="target"' if key == "target_iou" else ""
        hint = f"{meta.label} — {meta.help}"
        out.append(
            f'<tr{cls}><td title="{_e(hint)}">{_e(meta.label)}</td><td class="unit">{_e(meta.unit)}</td>{cells}</tr>'
        )
    return "\n".join(out) + "</table>"


def render_html(report: dict[str, Any], pngs: dict[str, bytes]) -> str:
    """The report as one self-contained html page; ``pngs``: title -> PNG bytes (embedded)."""
    names = list(report["translators"])
    bag = Path(report["bag"]).name
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>Goggles bag evaluation: {_e(bag)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Goggles bag evaluation: {_e(bag)}</h1>",
        f'<p class="sub">{_e(_bag_line(report))}. Entries: {_e(", ".join(names))} '
        "(<em>none</em> is the camera image without goggles). Best value per row highlighted.</p>",
    ]
    parts += [f'<div class="warn"><strong>Warning:</strong> {_e(w)}</div>' for w in report["warnings"]]
    parts += ["<h2>Summary</h2>", _html_table(report, METRICS, False)]
    speed = _html_table(report, SPEED, True)
    if speed:
        parts += ["<h2>Speed</h2>", speed]
    classes, per_class = _per_class(report)
    if classes:
        parts.append("<h2>Per-class IoU</h2><table><tr><th>class</th>" + "".join(f"<th>{_e(n)}</th>" for n in names))
        for c in classes:
            cls = ' class="target"' if c == "target" else ""
            label = "target (navigation goal)" if c == "target" else c
            best = _best(per_class[c], "higher")
            cells = "".join(
                f'<td class="num{" best" if i in best else ""}">{_e(_fmt(v))}</td>' for i, v in enumerate(per_class[c])
            )
            parts.append(f"<tr{cls}><td>{_e(label)}</td>{cells}</tr>")
        parts.append("</table>")
    for title, png in pngs.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f'<h2>{_e(title)}</h2><img alt="{_e(title)}" src="data:image/png;base64,{data}">')
        if title == "Contact sheet":
            parts.append(f'<p class="sub">{_e(SHEET_CAPTION)}</p>')
    parts.append("<h2>What the numbers mean</h2><dl>")
    for key, meta in {**METRICS, **SPEED}.items():
        unit = f" [{meta.unit}]" if meta.unit else ""
        parts.append(f"<dt>{_e(meta.label)}{_e(unit)} <code>{_e(key)}</code></dt><dd>{_e(meta.help)}.</dd>")
    parts.append("</dl>")
    if report["fd_seg_reference"]:
        parts.append(f"<p>fd_seg compares with: {_e(report['fd_seg_reference'])}.</p>")
    if report["metrics_unavailable"]:
        parts.append("<h2>Not computed</h2><ul>")
        parts += [f"<li><code>{_e(k)}</code>: {_e(why)}</li>" for k, why in report["metrics_unavailable"].items()]
        parts.append("</ul>")
    parts.append(
        "<h2>Bag</h2><table><tr><th>topic</th><th>role</th><th>type</th><th>declared</th>"
        "<th>decoded</th><th>undecodable</th><th>lost</th></tr>"
    )
    for topic, st in report["topics"].items():
        cells = "".join(
            f'<td class="num">{_e(_fmt(st[k]))}</td>' for k in ("declared", "decoded", "undecodable", "lost")
        )
        parts.append(f"<tr><td>{_e(topic)}</td><td>{_e(st['role'])}</td><td>{_e(st['type'])}</td>{cells}</tr>")
    paired = report["paired"]
    parts.append(
        f"</table><p>Reference and labels messages pair with the camera frame of equal header stamp, else the "
        f"nearest within {_e(paired['tolerance_ms'])} ms (half a frame period): {_e(_fmt(paired['reference']))} "
        f"reference and {_e(_fmt(paired['labels']))} labels pairs. Bag: <code>{_e(report['bag'])}</code>.</p>"
    )
    parts.append(f"<footer>sim2real_goggles {_e(__version__)} · goggles eval-bag</footer></body></html>")
    return "\n".join(parts)


def write_reports(
    out: Path,
    report: dict[str, Any],
    time_s: np.ndarray,
    series: dict[str, dict[str, np.ndarray]],
    contact_columns: Sequence[tuple[str, np.ndarray]],
    contact_rows: Sequence[str],
) -> None:
    """Write ``timeline.png``, ``contact_sheet.png``, ``report.md`` and ``report.html`` to ``out``."""
    pngs: dict[str, bytes] = {}
    files: dict[str, str] = {}
    timeline = timeline_png(time_s, series)
    if timeline is not None:
        pngs["Per-frame metrics"], files["Per-frame metrics"] = timeline, "timeline.png"
    pngs["Contact sheet"], files["Contact sheet"] = (
        contact_sheet_png(contact_columns, contact_rows),
        "contact_sheet.png",
    )
    for title, png in pngs.items():
        (out / files[title]).write_bytes(png)
    (out / "report.md").write_text(render_markdown(report, files))
    (out / "report.html").write_text(render_html(report, pngs))


__all__ = ["METRICS", "SPEED", "contact_sheet_png", "render_html", "render_markdown", "timeline_png", "write_reports"]
