"""Things a person looks at: the motion mask as a heatmap over the frames (PNG contact sheet or MP4), and the
evidence page of a query (:func:`render_report`, self-contained HTML; :func:`render_sheet`, the same as a PNG)."""

from __future__ import annotations

import base64
import json
import textwrap
import time
from dataclasses import dataclass, field
from html import escape as esc
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .types import Hit

MASK_SUFFIXES = (".npy", ".png", ".mp4")


def overlay(frames: np.ndarray, weight: np.ndarray, alpha: float = 0.55, min_side: int = 192) -> np.ndarray:
    """(T, H, W, 3) uint8 frames and a (T, H, W) weight in [0, 1] -> (T, H', W', 3) uint8: each frame beside
    its heatmap overlay (blue = still, red = moving), enlarged so the shorter side is at least ``min_side``."""
    t, h, w = weight.shape
    heat = np.stack([cv2.applyColorMap((wt * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1] for wt in weight])
    blended = (frames * (1 - alpha) + heat * alpha).astype(np.uint8)             # (T, H, W, 3)
    pair = np.concatenate([frames, blended], axis=2)                             # (T, H, 2W, 3)
    scale = max(1, int(np.ceil(min_side / min(h, w))))
    if scale > 1:
        pair = np.stack([cv2.resize(p, (2 * w * scale, h * scale), interpolation=cv2.INTER_NEAREST) for p in pair])
    return pair


def contact_sheet(pairs: np.ndarray, columns: int = 3, max_frames: int = 12) -> np.ndarray:
    """Up to ``max_frames`` evenly spaced overlay pairs tiled in a grid: (rows*H, columns*W, 3) uint8."""
    idx = np.unique(np.linspace(0, len(pairs) - 1, min(max_frames, len(pairs))).round().astype(int))
    tiles = list(pairs[idx])
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[r:r + columns], axis=1) for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    scale = max(0.4, img.shape[1] / 1400)
    cv2.putText(out, text, (8, int(24 * scale / 0.6)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2,
                cv2.LINE_AA)
    return out


def write_mask(out: str | Path, frames: np.ndarray, weight: np.ndarray, fps: float, static: bool = False) -> Path:
    """Write a mask: ``.npy`` the raw (T, H, W) float32 weight; ``.png`` a contact sheet; ``.mp4`` a video.

    A ``static`` clip (no motion found: a uniform weight) is labelled so, not shown as 'everything moves'."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in MASK_SUFFIXES:
        raise ValueError(f"--out {str(out)!r}: unsupported kind {suffix or '(none)'!r}; use one of {MASK_SUFFIXES}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        np.save(out, weight.astype(np.float32))
        return out
    pairs = overlay(frames, weight)
    if static:
        pairs = np.stack([_label(p, "static: no motion found, uniform weight") for p in pairs])
    if suffix == ".png":
        if not cv2.imwrite(str(out), contact_sheet(pairs)[..., ::-1]):
            raise OSError(f"could not write {str(out)!r}")
        return out
    from .video import write_video

    h, w = pairs.shape[1:3]
    write_video(out, pairs[:, : h - h % 2, : w - w % 2], fps)
    return out


# ============================================================================ the evidence page of a query
#
# render_report: one self-contained HTML page (images inlined as data: URIs, inline CSS, no script, nothing
# fetched); render_sheet: the same evidence as one PNG contact sheet. Both are built from one _Evidence:
# the query's keyframes and motion heatmap, the influence hits beside the opposed ones, the motion-similar
# clips (similarity, not influence) and every warning, each hit's own keyframes decoded from its stored path
# (a clip whose file cannot be read any more gets a placeholder that says why).

KEYFRAMES = 4          # evenly spaced standardized frames shown per clip
QUERY_SIDE = 160       # the query's frames are enlarged (nearest neighbour) to at least this many px tall
HIT_SIDE = 112         # and each hit's
GAP = 4                # px between the frames of a strip
_BG = (255, 255, 255)  # strip background (RGB)


@dataclass
class _Shown:
    """One hit as shown: its keyframes strip (RGB uint8) or, when its video cannot be read, why."""

    hit: Hit
    strip: np.ndarray | None = None
    error: str = ""
    window: str = "the standard window of the whole clip"
    same_as_query: bool = False


@dataclass
class _Evidence:
    title: str
    video: str
    prompt: str
    window: str
    query: dict
    timings: dict
    index_path: str
    size: int
    fingerprint: dict
    fps: float
    hit_height: int = HIT_SIDE             # px height of a hit's keyframes strip (and of its placeholder)
    key_idx: list[int] = field(default_factory=list)
    frames: np.ndarray | None = None      # (T, H, W, 3) uint8 standardized query frames
    weight: np.ndarray | None = None      # (T, H, W) float32 in [0, 1]
    mask_facts: dict = field(default_factory=dict)
    query_error: str = ""
    influence: list[_Shown] = field(default_factory=list)     # the clips that helped (highest scores)
    opposed: list[_Shown] | None = None                       # those that pushed against it (lowest scores)
    opposed_note: str = ""
    similar: list[_Shown] = field(default_factory=list)
    combined: list[_Shown] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)         # the query's own (result.query["warnings"])
    notes: list[str] = field(default_factory=list)            # what the report itself ran into


def _video_spec(index):
    from .config import VideoSpec

    return VideoSpec.from_dict(index.store.fingerprint["video"])


def _window_text(start_sec, end_sec) -> str:
    if start_sec is None and end_sec is None:
        return "the standard window of the whole clip"
    lo = f"{float(start_sec):g}" if start_sec is not None else "0"
    hi = f"{float(end_sec):g}" if end_sec is not None else "end"
    return f"the standard window of [{lo}, {hi}) s"


def _seconds(v) -> float | None:
    try:
        return None if v is None or v == "" else float(v)
    except (TypeError, ValueError):
        return None


def _clip_range(hit: Hit) -> tuple[float | None, float | None]:
    """The stored clip's start/end seconds, where its row records them (manifest metadata or the computed
    ``motive`` facts); else None (the whole file)."""
    meta = hit.metadata if isinstance(hit.metadata, dict) else {}
    motive = meta.get("motive") if isinstance(meta.get("motive"), dict) else {}
    start = _seconds(meta.get("start_sec", motive.get("start_sec")))
    end = _seconds(meta.get("end_sec", motive.get("end_sec")))
    return start, end


def _same_file(a: str, b: str) -> bool:
    try:
        return bool(a) and bool(b) and Path(a).resolve() == Path(b).resolve()
    except (OSError, ValueError):
        return False


def _key_indices(t: int, n: int = KEYFRAMES) -> list[int]:
    return [int(i) for i in np.unique(np.linspace(0, t - 1, min(n, t)).round().astype(int))]


def _enlarged_height(h: int, side: int) -> int:
    """The height :func:`_enlarge` gives a frame ``h`` px tall."""
    return side if h > 2 * side else h * max(1, int(np.ceil(side / h)))


def _enlarge(img: np.ndarray, side: int) -> np.ndarray:
    """Nearest-neighbour enlargement by a whole factor so the height is at least ``side`` (a large frame is
    shrunk to ``side`` instead)."""
    h, w = img.shape[:2]
    if h > 2 * side:
        return cv2.resize(img, (max(1, round(w * side / h)), side), interpolation=cv2.INTER_AREA)
    f = max(1, int(np.ceil(side / h)))
    return img if f == 1 else cv2.resize(img, (w * f, h * f), interpolation=cv2.INTER_NEAREST)


def _strip(tiles: list[np.ndarray], gap: int = GAP) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    parts = []
    for i, t in enumerate(tiles):
        if i:
            parts.append(np.full((h, gap, 3), _BG, np.uint8))
        if t.shape[0] < h:
            t = np.concatenate([t, np.full((h - t.shape[0], t.shape[1], 3), _BG, np.uint8)], axis=0)
        parts.append(t)
    return np.concatenate(parts, axis=1)


def _heat(frame: np.ndarray, weight: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """A (H, W) weight in [0, 1] over a (H, W, 3) frame: blue = still, red = moving."""
    heat = cv2.applyColorMap((np.clip(weight, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    return (frame * (1 - alpha) + heat * alpha).astype(np.uint8)


def _reason(e: BaseException) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) <= 400 else text[:400] + "..."


def opposed_hits(index, result, video: str | Path | None = None, *, start_sec: float | None = None,
                 end_sec: float | None = None) -> list[Hit]:
    """The hits of the other sign to ``result.hits``: the most opposed clips of an ordinary query (for a
    ``negative`` one, the most influential), by a second query of the same video and prompt with the same k
    (similarity lists off). Costs one more embedding (a forward and backward pass of the model)."""
    q = result.query
    k = int(q.get("k") or max(1, len(result.hits)))
    other = index.query(str(video or q["video"]), prompt=q.get("prompt", "") or "", k=k,
                        negative=not bool(q.get("negative", False)), start_sec=start_sec, end_sec=end_sec,
                        similar=0)
    return other.hits


def _gather(index, result, video, start_sec, end_sec, title, opposed, keyframes, video_name=None) -> _Evidence:
    from .api import compute_mask
    from .video import load_video

    q = dict(result.query or {})
    video = str(video if video is not None else q.get("video", ""))
    spec = _video_spec(index)
    fp = index.store.fingerprint
    ev = _Evidence(title=title or "Motion attribution report", video=video_name or video, prompt=str(q.get("prompt", "") or ""),
                   window=_window_text(start_sec, end_sec), query=q, timings=dict(result.timings or {}),
                   index_path=str(index.location), size=len(index.store), fingerprint=fp, fps=float(spec.fps),
                   warnings=[str(w) for w in q.get("warnings", []) or []],
                   hit_height=_enlarged_height(spec.height, HIT_SIDE))

    # the query: its standardized frames and the motion mask the index's settings make of them
    try:
        frames, mm = compute_mask(video, index.mask_config(), spec, start_sec=start_sec, end_sec=end_sec)
    except Exception as e:  # the page still shows the hits
        ev.query_error = _reason(e)
        ev.notes.append(f"the query video could not be shown: {ev.query_error}")
    else:
        ev.frames, ev.weight = frames, mm.weight
        ev.key_idx = _key_indices(len(frames), keyframes)
        kind = ev.fingerprint["mask"].get("kind", "flow")
        ev.mask_facts = {"mask": kind, "motion": ev.fingerprint["mask"].get("motion", ""),
                         "flow": ev.fingerprint["mask"].get("flow", ""), "static": bool(mm.static),
                         "max_flow_px": mm.max_flow_px, **(mm.info or {})}

    cache: dict[tuple, tuple[np.ndarray | None, str]] = {}

    def shown(hit: Hit) -> _Shown:
        start, end = _clip_range(hit)
        s = _Shown(hit=hit, window=_window_text(start, end), same_as_query=_same_file(hit.path, video))
        key = (hit.path, start, end)
        if key not in cache:
            if not hit.path:
                cache[key] = (None, "no path is stored for this clip")
            else:
                try:
                    std = load_video(hit.path, spec, start_sec=start, end_sec=end)
                except Exception as e:
                    cache[key] = (None, _reason(e))
                else:
                    tiles = [_enlarge(std.frames[i], HIT_SIDE) for i in _key_indices(len(std.frames), keyframes)]
                    cache[key] = (_strip(tiles), "")
        s.strip, s.error = cache[key]
        return s

    helped, other = list(result.hits), None
    note = ""
    if opposed is None:
        try:
            other = opposed_hits(index, result, video, start_sec=start_sec, end_sec=end_sec)
            note = "found by a second query of the same video and prompt (negative influence)"
        except Exception as e:
            note = f"could not be computed: {_reason(e)}"
            ev.notes.append(f"the opposed influence could not be computed: {_reason(e)}")
    else:
        other = list(opposed)
        note = "" if other else "not computed (none given)"
    if q.get("negative"):  # the result itself is the opposed list: the other one is the helping list
        helped, other = (other or []), helped
    ev.influence = [shown(h) for h in helped]
    ev.opposed = [shown(h) for h in other] if other is not None else None
    if ev.opposed and all(s.hit.score >= 0 for s in ev.opposed):
        note = (note + ". " if note else "") + ("Every score here is positive: no stored clip pushed against "
                                                 "this motion; these are the least influential ones")
    ev.opposed_note = note
    ev.similar = [shown(h) for h in result.similar]
    ev.combined = [shown(h) for h in getattr(result, "combined", []) or []]
    bad = sorted({s.hit.clip_id for s in ev.influence + (ev.opposed or []) + ev.similar + ev.combined if s.error})
    if bad:
        ev.notes.append(f"{len(bad)} clip(s) whose video could not be read are shown as placeholders: "
                        + ", ".join(bad))
    return ev


# ------------------------------------------------------------------------------------------------ HTML

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f3f4f6;color:#1f2937;font:14px/1.45 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",
Helvetica,Arial,sans-serif}
main{max-width:1240px;margin:0 auto;padding:20px 24px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:0 0 6px}
h3{font-size:15px;margin:0 0 8px}
.sub{color:#6b7280;margin:0 0 14px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 18px;margin:0 0 16px}
table.kv{border-collapse:collapse;width:100%}
table.kv th{text-align:left;font-weight:600;color:#4b5563;padding:3px 12px 3px 0;vertical-align:top;
white-space:nowrap;width:1%}
table.kv td{padding:3px 0;vertical-align:top;word-break:break-word}
.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.warn{background:#fff7e0;border:1px solid #f0b429;border-left:6px solid #f0b429}
.warn h2{color:#8a5a00}
.warn li{margin:2px 0}
.note{background:#eef2f7;border-left:4px solid #94a3b8;padding:8px 12px;border-radius:4px;margin:8px 0 12px;
color:#374151}
figure{margin:0;display:inline-block;vertical-align:top;text-align:center}
figcaption{font-size:12px;color:#6b7280;margin-top:2px}
img{image-rendering:pixelated;max-width:100%;height:auto;display:block}
.frames{display:flex;flex-wrap:wrap;gap:8px;margin:6px 0 10px}
.legend{display:flex;align-items:center;gap:8px;font-size:12px;color:#4b5563;margin:4px 0 8px}
.bar{width:180px;height:12px;border-radius:2px;background:linear-gradient(90deg,#00007f,#0000ff,#00ffff,
#ffff00,#ff0000,#7f0000)}
.cols{display:grid;grid-template-columns:1fr 1fr;gap:16px;align-items:start}
.col h2{padding-bottom:6px;border-bottom:3px solid #9ca3af}
.col.pos h2{border-color:#15803d;color:#166534}
.col.neg h2{border-color:#b91c1c;color:#991b1b}
.card{border:1px solid #e5e7eb;border-radius:6px;padding:10px 12px;margin:10px 0;background:#fff}
.pos .card{border-left:5px solid #15803d}
.neg .card{border-left:5px solid #b91c1c}
.sim .card{border-left:5px solid #64748b}
.card .head{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap;margin-bottom:6px}
.rank{font-weight:700;font-size:15px}
.cid{font-weight:600}
.score{margin-left:auto;font-variant-numeric:tabular-nums}
.score b{font-size:15px}
.caption{margin:0 0 6px;font-style:italic;color:#374151}
.missing{display:flex;flex-direction:column;justify-content:center;align-items:center;text-align:center;
border:2px dashed #b91c1c;background:#fdf2f2;color:#7f1d1d;border-radius:4px;padding:10px;margin:4px 0 8px}
.missing b{font-size:14px}
.missing span{font-size:12px;word-break:break-word}
details{margin-top:4px}
summary{cursor:pointer;color:#4b5563;font-size:12.5px}
.meta th,.meta td{font-size:12.5px}
.chip{display:inline-block;background:#f3f4f6;border-radius:3px;padding:0 6px;margin:0 4px 3px 0;
font-size:12px;white-space:nowrap}
.chip b{color:#4b5563;font-weight:600}
.tag{display:inline-block;background:#e0e7ff;color:#3730a3;border-radius:3px;padding:0 6px;font-size:12px}
.empty{color:#6b7280;font-style:italic}
.sim{background:#f8fafc}
.simgrid{display:grid;grid-template-columns:1fr 1fr;gap:0 16px}
footer{color:#6b7280;font-size:12px;margin-top:8px}
"""


def _data_uri(img: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]))
    if not ok:
        raise OSError("could not encode an image as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _img(img: np.ndarray, alt: str) -> str:
    h, w = img.shape[:2]
    return f'<img src="{_data_uri(img)}" width="{w}" height="{h}" alt="{esc(alt)}">'


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        text = f"{v:.6g}"
    elif isinstance(v, str):
        text = v
    else:
        text = json.dumps(v, default=str, ensure_ascii=False)
    return text if len(text) <= 300 else text[:300] + "..."


def _kv(rows: list[tuple[str, str]], cls: str = "kv") -> str:
    body = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _score_text(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:+.{digits}f}"


def _percentile_text(hit: Hit) -> str:
    p = getattr(hit, "percentile", None)
    return "—" if p is None else f"{float(p):.1f}"


def _card(s: _Shown, what: str, height: int = HIT_SIDE) -> str:
    h = s.hit
    same = '<span class="tag">the query video itself</span>' if s.same_as_query else ""
    head = (f'<div class="head"><span class="rank">#{int(h.rank)}</span>'
            f'<span class="cid mono">{esc(h.clip_id)}</span>{same}'
            f'<span class="score">{esc(what)} <b>{esc(_score_text(h.score))}</b> · percentile '
            f'<b>{esc(_percentile_text(h))}</b></span></div>')
    if h.similarity is not None:
        head += f'<div class="sub">motion similarity {esc(_score_text(h.similarity))}</div>'
    caption = f'<p class="caption">{esc(h.caption)}</p>' if h.caption else '<p class="caption empty">no caption</p>'
    if s.strip is not None:
        pic = _img(s.strip, f"keyframes of {h.clip_id}")
    else:
        pic = (f'<div class="missing" style="min-height:{height}px"><b>video unavailable</b>'
               f'<span>{esc(s.error)}</span></div>')
    meta = h.metadata if isinstance(h.metadata, dict) else {"metadata": h.metadata}
    manifest = {k: v for k, v in meta.items() if k != "motive"}
    computed = meta.get("motive") if isinstance(meta.get("motive"), dict) else {}
    rows = [("path", f'<span class="mono">{esc(h.path or "(none)")}</span>'), ("shown", esc(s.window))]
    if manifest:
        rows.append(("metadata", _chips(manifest)))
    if computed:
        rows.append(("computed", _chips(computed)))
    return f'<div class="card">{head}{caption}{pic}{_kv(rows, "kv meta")}</div>'


def _chips(d: dict) -> str:
    return "".join(f'<span class="chip"><b>{esc(str(k))}</b> {esc(_fmt_value(v))}</span>' for k, v in d.items())


def _column(title: str, cls: str, shown: list[_Shown] | None, what: str, note: str, empty: str,
            height: int = HIT_SIDE) -> str:
    inner = f'<p class="sub">{esc(note)}</p>' if note else ""
    if shown is None:
        inner += f'<p class="empty">{esc(empty)}</p>'
    elif not shown:
        inner += '<p class="empty">no clips</p>'
    else:
        inner += "".join(_card(s, what, height) for s in shown)
    return f'<div class="col {cls}"><h2>{esc(title)}</h2>{inner}</div>'


def _fp_rows(ev: _Evidence) -> list[tuple[str, str]]:
    fp = ev.fingerprint
    model, mask = fp.get("model", {}), fp.get("mask", {})
    est, proj, vid = fp.get("estimator", {}), fp.get("projection", {}), fp.get("video", {})
    m = f"{model.get('family', '?')}, weights {model.get('weights', '?')}, {fp.get('num_params', '?')} params"
    mk = (f"{mask.get('kind', '?')}" + (f" ({mask.get('flow')} flow, {mask.get('motion')} motion, "
                                         f"{mask.get('normalize')})" if mask.get("kind") == "flow" else ""))
    es = (f"{est.get('loss', '?')} loss, timestep {est.get('timestep', '?')}, {est.get('samples', '?')} "
          f"sample(s), {est.get('precision', '?')}")
    pr = f"{proj.get('kind', '?')}, {proj.get('dim', '?')} dims, seed {proj.get('seed', '?')}"
    vd = (f"{vid.get('frames', '?')} frames at {vid.get('fps', '?')} fps, "
          f"{vid.get('width', '?')}x{vid.get('height', '?')}")
    return [("model", esc(m)), ("mask", esc(mk)), ("estimator", esc(es)), ("projection", esc(pr)),
            ("standard clip", esc(vd))]


def _query_section(ev: _Evidence) -> str:
    if ev.frames is None:
        return ('<section><h2>Query</h2><div class="missing" style="min-height:120px"><b>query video '
                f'unavailable</b><span>{esc(ev.query_error)}</span></div></section>')
    key, fps = ev.key_idx, ev.fps
    def figure(img: np.ndarray, alt: str, caption: str) -> str:
        return f"<figure>{_img(_enlarge(img, QUERY_SIDE), alt)}<figcaption>{esc(caption)}</figcaption></figure>"

    frames = "".join(figure(ev.frames[i], f"query frame {i}", f"frame {i} · {i / fps:.2f} s") for i in key)
    heats = "".join(figure(_heat(ev.frames[i], ev.weight[i]), f"motion heatmap, frame {i}",
                           f"frame {i} · {i / fps:.2f} s") for i in key)
    peak = ev.weight.max(axis=0)                                    # (H, W): where anything moved, at any time
    heats += figure(_heat(ev.frames[len(ev.frames) // 2], peak), "motion heatmap, peak over all frames",
                    f"peak over all {len(ev.frames)} frames")
    f = ev.mask_facts
    if f.get("mask") == "none":
        what = "no mask (kind 'none'): every pixel weighs the same, the ordinary loss"
    elif f.get("static"):
        what = "static: the mask saw no motion, so the query used a uniform weight (the ordinary loss)"
    else:
        what = "the weight each pixel gets in the motion-weighted loss (blue = still, red = moving)"
    facts = [("motion weight", esc(what))]
    if f.get("mask") != "none":
        facts.append(("mask", esc(f"{f.get('flow')} flow, {f.get('motion')} motion"
                                  + (" (camera motion subtracted)" if f.get("motion") == "object" else ""))))
        if f.get("max_flow_px") is not None and np.isfinite(f.get("max_flow_px")):
            facts.append(("largest flow", esc(f"{f['max_flow_px']:.2f} px/frame")))
        if "camera_speed_px" in f:
            facts.append(("camera", esc(f"{f['camera_speed_px']:.2f} px/frame median, fitted on "
                                        f"{f.get('camera_fits', '?')} of {f.get('camera_pairs', '?')} frame pairs")))
    return (f'<section><h2>Query</h2><p class="sub">{len(ev.frames)} standardized frames; {len(key)} evenly '
            f'spaced keyframes shown, enlarged (nearest neighbour)</p>'
            f'<h3>Keyframes</h3><div class="frames">{frames}</div>'
            f'<h3>Motion heatmap</h3><div class="legend"><span>still</span><span class="bar"></span>'
            f'<span>moving</span></div><div class="frames">{heats}</div>{_kv(facts)}</section>')


def _html(ev: _Evidence) -> str:
    q = ev.query
    k = q.get("k", len(ev.influence))
    total = ev.timings.get("total")
    head = [("query video", f'<span class="mono">{esc(ev.video)}</span>'),
            ("prompt", esc(ev.prompt) if ev.prompt else '<span class="empty">(none)</span>'),
            ("clip shown", esc(ev.window)),
            ("index", f'<span class="mono">{esc(ev.index_path)}</span> · {ev.size} clips stored'),
            ("asked for", esc(f"top {k}" + (" (negative query)" if q.get("negative") else ""))),
            *_fp_rows(ev)]
    if total is not None:
        head.append(("query time", esc(f"{float(total):.2f} s")))
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    parts = [f'<h1>{esc(ev.title)}</h1><p class="sub">Which training clips most influenced the motion of this '
             f'video, and which pushed against it. Generated {esc(when)}.</p>', f"<section>{_kv(head)}</section>"]
    if ev.warnings or ev.notes or q.get("static"):
        items = "".join(f"<li>{esc(w)}</li>" for w in ev.warnings)
        items += "".join(f"<li><i>report:</i> {esc(n)}</li>" for n in ev.notes)
        parts.append(f'<section class="warn" id="warnings"><h2>⚠ Warnings</h2><ul>{items}</ul></section>')
    parts.append(_query_section(ev))
    parts.append(
        '<section id="influence"><h2>Influence</h2><div class="note">Score: the cosine between the query\'s and '
        'the clip\'s projected motion-weighted loss gradients, in [−1, 1]. Positive: training on the clip moved '
        'the model toward this motion; negative: away from it. Percentile: the share of the index\'s own '
        'clip-to-clip scores below this score (near 100: unusually high, near 0: unusually low); it says how '
        'unusual a score is, not a probability that the clip was used.</div><div class="cols">'
        + _column("Most influential (helped this motion)", "pos", ev.influence, "influence", "",
                  "not computed", ev.hit_height)
        + _column("Most opposed (pushed against it)", "neg", ev.opposed, "influence", ev.opposed_note,
                  "not computed", ev.hit_height)
        + "</div></section>")
    sim = ("".join(_card(s, "similarity", ev.hit_height) for s in ev.similar)
           or '<p class="empty">no clips (the index has no motion channel, or none were asked for)</p>')
    parts.append('<section class="sim" id="similarity"><h2>Motion similarity — not influence</h2>'
                 '<div class="note">These clips <b>move like</b> the query (cosine of motion descriptors). That is '
                 'similarity, not evidence that the model learned this motion from them: use it to find look-alikes, '
                 'not to attribute.</div>'
                 f'<div class="simgrid">{sim}</div></section>')
    if ev.combined:
        parts.append('<section class="sim" id="combined"><h2>Motion-similar clips ordered by influence</h2>'
                     '<div class="note">The most motion-similar candidates, re-ranked by their influence score '
                     '(shown), with their motion similarity beside it.</div><div class="simgrid">'
                     + "".join(_card(s, "influence", ev.hit_height) for s in ev.combined) + "</div></section>")
    parts.append("<footer>motive-index evidence report. Keyframes are the standardized frames the index "
                 "embeds; each clip is decoded again from its stored path when the report is made.</footer>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(ev.title)}</title><style>{_CSS}</style></head>"
            f"<body><main>{''.join(parts)}</main></body></html>\n")


def render_report(index, result, video: str | Path | None = None, *, start_sec: float | None = None,
                  end_sec: float | None = None, title: str | None = None, opposed: list[Hit] | None = None,
                  keyframes: int = KEYFRAMES, video_name: str | None = None) -> str:
    """The evidence page of a query: one self-contained HTML document (images inlined as ``data:`` URIs,
    inline CSS, no script, nothing fetched), returned as text.

    ``index``: the :class:`~motive_index.api.MotiveIndex` that answered; ``result``: its
    :class:`~motive_index.api.QueryResult`; ``video``: the query video (default ``result.query["video"]``), with
    the ``start_sec``/``end_sec`` the query used. The page shows the query's keyframes and motion heatmap (the
    mask the index's settings make of it), the influence hits beside the opposed ones, each with its keyframes,
    rank, score, percentile, clip id, caption and metadata, the motion-similar clips in their own section
    (similarity, not influence), and every warning. ``opposed``: the opposed hits, if already known; ``None``
    (default) runs a second query for them (:func:`opposed_hits`: one more embedding of the video); ``[]``
    leaves that column empty. For a ``negative`` result its hits are the opposed column, and ``opposed`` (or the
    second query) gives the influence column. A clip whose video cannot be read is shown as a placeholder
    saying why. ``video_name``: what the page calls the query video (default its path; the service gives
    the uploader's file name, never its temporary path)."""
    return _html(_gather(index, result, video, start_sec, end_sec, title, opposed, keyframes, video_name))


# ------------------------------------------------------------------------------------------------ PNG sheet

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def _ascii(text: str) -> str:
    return str(text).replace("—", "-").replace("−", "-").encode("ascii", "replace").decode("ascii")


def _text_band(width: int, lines: list[tuple[str, tuple[int, int, int]]], scale: float = 0.5,
               bg=(255, 255, 255), bold: bool = False) -> np.ndarray:
    """Lines of text (RGB colours), each cut to fit ``width``."""
    lh = int(24 * scale / 0.5)
    band = np.full((lh * len(lines) + 6, width, 3), bg, np.uint8)
    for i, (text, colour) in enumerate(lines):
        t = _ascii(text)
        while t and cv2.getTextSize(t, _FONT, scale, 1)[0][0] > width - 12:
            t = t[:-4] + "..." if len(t) > 4 else ""
        cv2.putText(band, t, (6, lh * (i + 1) - 6), _FONT, scale, colour, 2 if bold else 1, cv2.LINE_AA)
    return band


def _pad_to(img: np.ndarray, width: int, bg=(255, 255, 255)) -> np.ndarray:
    if img.shape[1] >= width:
        return img[:, :width]
    return np.concatenate([img, np.full((img.shape[0], width - img.shape[1], 3), bg, np.uint8)], axis=1)


def _vstack(parts: list[np.ndarray], width: int) -> np.ndarray:
    return np.concatenate([_pad_to(p, width) for p in parts], axis=0)


def _hit_tile(s: _Shown | None, width: int, what: str, colour, height: int = HIT_SIDE) -> np.ndarray:
    if s is None:
        return np.full((1, width, 3), 255, np.uint8)
    h = s.hit
    pct = _percentile_text(h).replace("—", "n/a")
    lines = [(f"#{h.rank} {h.clip_id}   {what} {_score_text(h.score)}   pct {pct}", colour),
             (h.caption or "(no caption)", (70, 70, 70))]
    if s.strip is not None:
        pic = s.strip
    else:
        pic = np.full((height, width - 12, 3), (253, 242, 242), np.uint8)
        cv2.rectangle(pic, (1, 1), (pic.shape[1] - 2, pic.shape[0] - 2), (185, 28, 28), 2)
        cv2.putText(pic, "video unavailable", (10, 30), _FONT, 0.6, (127, 29, 29), 2, cv2.LINE_AA)
        _put_lines(pic, s.error, 54, (127, 29, 29))
    pic = np.concatenate([np.full((pic.shape[0], 6, 3), 255, np.uint8), pic], axis=1)
    return _vstack([_text_band(width, lines, 0.45), pic, np.full((10, width, 3), 255, np.uint8)], width)


def _put_lines(img: np.ndarray, text: str, y: int, colour, scale: float = 0.4) -> None:
    per_line = max(10, (img.shape[1] - 20) // 7)
    lines = textwrap.wrap(_ascii(text), per_line, break_long_words=True)
    for i, line in enumerate(lines[:4]):
        if y + 4 > img.shape[0]:
            break
        cv2.putText(img, line + (" ..." if i == 3 and len(lines) > 4 else ""), (10, y), _FONT, scale, colour, 1,
                    cv2.LINE_AA)
        y += 16


def _sheet(ev: _Evidence) -> np.ndarray:
    strips = [s.strip.shape[1] for s in ev.influence + (ev.opposed or []) + ev.similar if s.strip is not None]
    col = max([480, *(w + 24 for w in strips)])          # one hit column
    width = 2 * col
    rule = np.full((2, width, 3), (200, 200, 200), np.uint8)
    parts = [_text_band(width, [(ev.title, (20, 20, 20))], 0.8, bold=True),
             _text_band(width, [(f"query: {ev.video}", (40, 40, 40)),
                                (f"prompt: {ev.prompt or '(none)'}   index: {ev.size} clips", (40, 40, 40))], 0.45)]
    warns = [*ev.warnings, *(f"report: {n}" for n in ev.notes)]
    if warns:
        parts.append(_text_band(width, [(f"! {w}", (138, 90, 0)) for w in warns], 0.45, bg=(255, 247, 224)))
    if ev.frames is not None:
        key = ev.key_idx
        side = min(QUERY_SIDE, (width - 12) // (len(key) + 1) - GAP)
        fr = [_enlarge(ev.frames[i], side) for i in key]
        fr = [cv2.resize(f, (side * f.shape[1] // f.shape[0], side), interpolation=cv2.INTER_NEAREST)
              if f.shape[0] != side else f for f in fr]
        heats = [_heat(ev.frames[i], ev.weight[i]) for i in key]
        heats.append(_heat(ev.frames[len(ev.frames) // 2], ev.weight.max(axis=0)))
        heats = [cv2.resize(h, (side * h.shape[1] // h.shape[0], side), interpolation=cv2.INTER_NEAREST)
                 for h in heats]
        pad = np.full((side, 6, 3), 255, np.uint8)
        static = " (static: uniform weight)" if ev.mask_facts.get("static") else ""
        parts += [_text_band(width, [("QUERY keyframes", (20, 20, 20))], 0.5, bold=True),
                  np.concatenate([pad, _strip(fr)], axis=1),
                  _text_band(width, [(f"motion heatmap (blue = still, red = moving; last: peak over all "
                                      f"frames){static}", (20, 20, 20))], 0.5, bold=True),
                  np.concatenate([pad, _strip(heats)], axis=1)]
    else:
        parts.append(_text_band(width, [(f"query video unavailable: {ev.query_error}", (127, 29, 29))], 0.45))
    parts += [np.full((8, width, 3), 255, np.uint8), rule]
    green, red, grey = (21, 128, 61), (185, 28, 28), (71, 85, 105)
    parts.append(np.concatenate([_text_band(col, [("INFLUENCE: helped this motion", green)], 0.55, bold=True),
                                 _text_band(col, [("OPPOSED: pushed against it", red)], 0.55, bold=True)], axis=1))
    if ev.opposed_note:
        note = textwrap.wrap(_ascii(ev.opposed_note), max(20, (col - 12) // 7))
        parts.append(np.concatenate([np.full((18 * len(note) + 6, col, 3), 255, np.uint8),
                                     _text_band(col, [(line, red) for line in note], 0.4)[:18 * len(note) + 6]],
                                    axis=1))
    left, right = ev.influence, ev.opposed or []
    for i in range(max(len(left), len(right))):
        a = _hit_tile(left[i] if i < len(left) else None, col, "score", green, ev.hit_height)
        b = _hit_tile(right[i] if i < len(right) else None, col, "score", red, ev.hit_height)
        hgt = max(a.shape[0], b.shape[0])
        a, b = (np.concatenate([t, np.full((hgt - t.shape[0], col, 3), 255, np.uint8)]) for t in (a, b))
        parts.append(np.concatenate([a, b], axis=1))
    if ev.similar:
        parts += [rule, _text_band(width, [("MOTION SIMILARITY - not influence: these clips move like the query",
                                            grey)], 0.55, bold=True)]
        for i in range(0, len(ev.similar), 2):
            pair = [_hit_tile(s, col, "similarity", grey, ev.hit_height) for s in ev.similar[i:i + 2]]
            hgt = max(t.shape[0] for t in pair)
            pair = [np.concatenate([t, np.full((hgt - t.shape[0], col, 3), 255, np.uint8)]) for t in pair]
            parts.append(_pad_to(np.concatenate(pair, axis=1), width))
    return _vstack(parts, width)


def render_sheet(index, result, video: str | Path | None, out_png: str | Path, *, start_sec: float | None = None,
                 end_sec: float | None = None, title: str | None = None, opposed: list[Hit] | None = None,
                 keyframes: int = KEYFRAMES) -> Path:
    """The same evidence as :func:`render_report`, as one PNG contact sheet written to ``out_png``: the query's
    keyframes and heatmap rows, then the influence hits beside the opposed ones (each with its keyframes, rank,
    clip id, score and percentile), then the motion-similar clips. Arguments as for :func:`render_report`.
    Returns the path written."""
    out = Path(out_png)
    if out.suffix.lower() != ".png":
        raise ValueError(f"out_png={str(out)!r}: the contact sheet is a .png file")
    img = _sheet(_gather(index, result, video, start_sec, end_sec, title, opposed, keyframes))
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), img[..., ::-1]):
        raise OSError(f"could not write {str(out)!r}")
    return out
