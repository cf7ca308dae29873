"""One SVG chart of a rule's values against its threshold, for the status page and the replay report alike.

The inputs are neutral (times, numbers, spans, words): the caller turns its own records into them, so this
module knows nothing of rules, sources, the runtime or the replay. The output is one `<svg>` element as
text; every piece of text in it (a rule's name, a label, a threshold) is escaped, so a hostile name
renders as text and never as markup. A long series is drawn as a min/max envelope per pixel column, so a
one-bucket spike in a week of 1-minute data still shows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html import escape

Point = tuple[datetime, float]

# Tick steps on the time axis, shortest first: the first that puts at most MAX_TICKS ticks on the span wins.
STEPS = tuple(timedelta(seconds=s) for s in (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 3 * 3600, 6 * 3600, 12 * 3600,
    86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400))
MAX_TICKS = 7
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# The chart's classes, for a page that shows charts (shapes and colours: the page and the report alike).
CHART_STYLE = """
svg.chart{background:#fff;border:1px solid #dde2e8;display:block}.values{fill:none;stroke:#2f6fdf;stroke-width:1.3}
.threshold{stroke:#b42318;stroke-dasharray:5 4;stroke-width:1.2}.alarm-band{fill:#f04438;fill-opacity:.16}
.label-band.right{fill:#12b76a;fill-opacity:.14}.label-band.wrong{fill:#667085;fill-opacity:.14}
.level-marker{stroke:#7a2e0e;stroke-width:1.5}.level-text{font-size:11px;fill:#7a2e0e}.axis{font-size:11px;fill:#5b6675}
.grid{stroke:#eef1f4}.limit{fill:#b42318}.judged{fill:#f79009;stroke:#7a2e0e;stroke-width:.6}
.judged.fine{fill:#fff;stroke:#2f6fdf}.bucket.breach{fill:#b42318}.bucket.fine{fill:#12b76a}.bucket.filled{fill-opacity:.45}
"""


@dataclass(frozen=True)
class Threshold:
    value: float  # where the line is drawn (a boolean threshold: 1 for true, 0 for false)
    text: str  # what it says: "> 1500", "== false", "change over 10m > 20%"


@dataclass(frozen=True)
class Band:
    """A span shaded behind the values; `style` is its class ("alarm-band": the rule was in alarm)."""

    start: datetime
    end: datetime
    style: str = "alarm-band"


@dataclass(frozen=True)
class Marker:
    at: datetime
    label: str  # "L2": a level started here


@dataclass(frozen=True)
class Bucket:
    """A bucket a judgement used: breaching or not, a real datapoint (`value`) or a gap the missing-data
    treatment filled (`filled`, no value). Its dot sits at its start, where the series draws its value."""

    start: datetime
    end: datetime
    breaching: bool
    value: float | None = None
    filled: bool = False


@dataclass(frozen=True)
class Chart:
    series: Sequence[Point]
    start: datetime
    end: datetime
    threshold: Threshold | None = None
    bands: Sequence[Band] = ()
    markers: Sequence[Marker] = ()
    judged: Sequence[Bucket] = ()
    title: str = ""  # the accessible name, said before the threshold
    data: Mapping[str, str] = field(default_factory=dict)  # data-* attributes of the <svg> (for scripts, tests)


@dataclass(frozen=True)
class Frame:
    width: int = 960
    height: int = 180
    left: int = 64
    right: int = 16
    top: int = 14
    bottom: int = 24
    rows: int = 4  # horizontal grid lines, each with its value, between the top and the bottom
    digits: int = 1  # decimals of a coordinate (0 for a small chart: many of them must stay small)

    @property
    def columns(self) -> int:
        return max(1, (self.width - self.left - self.right) // 2)


def svg(c: Chart, frame: Frame = Frame()) -> str:
    f, d = frame, frame.digits
    span = max((c.end - c.start).total_seconds(), 1e-9)
    values = [(ts, v) for ts, v in c.series if c.start <= ts <= c.end]
    ys = [v for _, v in values] + [b.value for b in c.judged if b.value is not None]
    if c.threshold is not None:
        ys.append(c.threshold.value)
    lo, hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    plot_w, plot_h = f.width - f.left - f.right, f.height - f.top - f.bottom

    def x(ts: datetime) -> float:
        return f.left + plot_w * max(0.0, min(1.0, (ts - c.start).total_seconds() / span))

    def y(v: float) -> float:
        return f.top + plot_h * (1 - (v - lo) / (hi - lo))

    said = f"{c.title} against {c.threshold.text}" if c.threshold is not None else c.title
    attrs = "".join(f" data-{escape(k, True)}='{escape(v, True)}'" for k, v in c.data.items())
    out = [f"<svg class=chart{attrs} viewBox='0 0 {f.width} {f.height}' width='100%' role=img "
           f"aria-label='{escape(said, True)}'><title>{escape(said)}</title>"]
    for band in c.bands:
        out.append(f"<rect class='{escape(band.style, True)}' x='{x(band.start):.{d}f}' y='{f.top}' "
                   f"width='{max(1.0, x(band.end) - x(band.start)):.{d}f}' height='{plot_h}'/>")
    rows = frame.rows
    for k in range(rows + 1):
        gy = f.top + plot_h * k / rows
        out.append(f"<line class=grid x1='{f.left}' x2='{f.width - f.right}' y1='{gy:.{d}f}' y2='{gy:.{d}f}'/>"
                   f"<text class=axis x='{f.left - 4}' y='{gy + 4:.{d}f}' text-anchor=end>"
                   f"{_num(hi - (hi - lo) * k / rows)}</text>")
    for ts, text in time_ticks(c.start, c.end):
        out.append(f"<text class='axis time' x='{x(ts):.{d}f}' y='{f.height - 6}' text-anchor=middle>{text}</text>")
    if values:
        pts = " ".join(f"{px:.{d}f},{y(v):.{d}f}" for px, v in envelope([(x(ts), v) for ts, v in values], f.columns))
        out.append(f"<polyline class=values points='{pts}'/>")
    if c.threshold is not None:
        ty = y(c.threshold.value)
        ly = ty - 4 if ty - 4 >= f.top + 10 else ty + 12  # under the line when above it would be cut off
        out.append(f"<line class=threshold x1='{f.left}' x2='{f.width - f.right}' y1='{ty:.{d}f}' y2='{ty:.{d}f}'/>"
                   f"<text class='axis limit' x='{f.width - f.right}' y='{ly:.{d}f}' text-anchor=end>"
                   f"{escape(c.threshold.text)}</text>")
    for b in c.judged:
        kind = ("breach" if b.breaching else "fine") + (" filled" if b.filled else "")
        bx = x(b.start)
        out.append(f"<rect class='bucket {kind}' x='{bx:.{d}f}' y='{f.top + plot_h + 1}' "
                   f"width='{max(2.0, x(b.end) - bx - 1):.{d}f}' height='4'/>")
        if b.value is not None:
            out.append(f"<circle class='judged {kind}' cx='{bx:.{d}f}' "
                       f"cy='{y(b.value):.{d}f}' r='3'/>")
    for m in c.markers:
        mx = x(m.at)
        out.append(f"<line class=level-marker x1='{mx:.{d}f}' x2='{mx:.{d}f}' y1='{f.top}' y2='{f.top + plot_h}'/>"
                   f"<text class=level-text x='{mx + 3:.{d}f}' y='{f.top + 10}'>{escape(m.label)}</text>")
    out.append("</svg>")
    return "".join(out)


def time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    """Ticks on round times that suit the span (seconds for a minute, hours for a day, dates for a week),
    each with its text."""
    span = end - start
    if span <= timedelta(0):
        return []
    step = next((s for s in STEPS if span / s <= MAX_TICKS), STEPS[-1])
    first = EPOCH + step * -(-(start - EPOCH) // step)  # the first multiple of `step` at or after start
    fmt = _format(step, span)
    out, ts = [], first
    while ts <= end:
        out.append((ts, ts.strftime(fmt)))
        ts += step
    return out


def _format(step: timedelta, span: timedelta) -> str:
    if step < timedelta(minutes=1):
        return "%H:%M:%S"
    if step >= timedelta(days=1):
        return "%m-%d"
    if span > timedelta(days=1):
        return "%m-%d %H:%M"
    return "%H:%M"


def envelope(pts: list[tuple[float, float]], columns: int) -> list[tuple[float, float]]:
    """At most two points (the min and the max, in time order) per pixel column of `columns`."""
    if len(pts) <= 2 * columns or not pts:
        return pts
    left, right = pts[0][0], pts[-1][0]
    width = max(right - left, 1e-9)
    cols: dict[int, list[tuple[float, float]]] = {}
    for px, v in pts:
        cols.setdefault(int((px - left) * (columns - 1) / width), []).append((px, v))
    out: list[tuple[float, float]] = []
    for col in sorted(cols):
        group = cols[col]
        a, b = min(group, key=lambda p: p[1]), max(group, key=lambda p: p[1])
        out.extend(sorted({a, b}))
    return out


def _num(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"
