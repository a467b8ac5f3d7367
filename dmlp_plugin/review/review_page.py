"""``build_review_page``: look at what purification changed, in one HTML file.

The page holds a summary of the run, the noise transition counted on the trusted set (a
heat map), the changes per class, and a gallery of the likeliest label errors in the
order ``result.label_issues`` ranks them, with a class filter above it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError, ShapeError
from ..io import atomic_write, check_output_path
from .html import document, esc
from .images import THUMBNAIL_SIZE, thumbnail_uri

if TYPE_CHECKING:
    from ..data import ImageDataset
    from ..result import PurifyResult

__all__ = ["build_review_page", "Page", "class_names_for", "transition_counts", "DEFAULT_TOP_K"]

#: Cards in the gallery unless the caller asks for another number.
DEFAULT_TOP_K = 200

_FILTER_SCRIPT = """
(function () {
  var cards = Array.prototype.slice.call(document.querySelectorAll('#gallery .card'));
  var cls = document.getElementById('class-filter'), by = document.getElementById('filter-by');
  var shown = document.getElementById('shown-count');
  function apply() {
    var c = cls.value, b = by.value, n = 0;
    cards.forEach(function (card) {
      var ok = c === 'all' || (b !== 'purified' && card.dataset.given === c) ||
               (b !== 'given' && card.dataset.purified === c);
      card.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n;
  }
  cls.addEventListener('change', apply);
  by.addEventListener('change', apply);
  apply();
})();
"""


@dataclass(frozen=True)
class Page:
    """A page written to disk: where, and how many image cards it holds."""

    path: Path
    cards: int


def build_review_page(result: "PurifyResult", images: "ImageDataset", output: str | os.PathLike, *,
                      top_k: int = DEFAULT_TOP_K, thumbnail_size: int = THUMBNAIL_SIZE,
                      title: str = "What purification changed") -> Page:
    """Write one self-contained HTML page showing what ``result`` changed, with ``images``.

    Parameters
    ----------
    result : PurifyResult
        A purification result (``PurifyResult.load("purified.npz")``).
    images : ImageDataset
        The images the labels belong to, in the same order
        (:func:`~dmlp_plugin.review.open_images`).
    output : path
        The ``.html`` file to write (atomically).
    top_k : int
        Cards in the gallery: the ``top_k`` likeliest label errors, as
        ``result.label_issues`` ranks them (fewer when fewer labels changed).
    thumbnail_size : int
        Longest side of a thumbnail; smaller images are inlined as they are.
    title : str
        The page's title.

    Returns
    -------
    Page
        The path written and the number of cards.

    Raises
    ------
    ShapeError
        ``images`` and ``result`` have different numbers of rows.
    InputError
        A bad ``top_k`` or output path.
    """
    output = check_output_path(output, "output", suffixes=(".html", ".htm"))
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise InputError(f"top_k must be a count >= 0, got {top_k!r}")
    if len(images) != len(result):
        raise ShapeError(f"the images hold {len(images):,} rows but the purified labels {len(result):,}; "
                         "give the images the labels were purified for (same dataset and split)")
    names = class_names_for(result, images)
    rows = result.label_issues[:top_k]
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="muted">{len(result):,} rows, made by dmlp-plugin. Open offline: images are inlined.</p>',
            _summary(result), _trusted_sections(result, names),
            _gallery(result, images, rows, names, thumbnail_size)]
    with atomic_write(output, "w") as fh:
        fh.write(document(title, body, _FILTER_SCRIPT))
    return Page(output, len(rows))


def class_names_for(result: "PurifyResult", images: "ImageDataset | None" = None) -> list[str]:
    """The result's class names, else the images', else the class numbers."""
    for names in (result.class_names, getattr(images, "classes", None)):
        if names and len(names) == result.num_classes:
            return [str(n) for n in names]
    return [str(c) for c in range(result.num_classes)]


def transition_counts(result: "PurifyResult") -> np.ndarray | None:
    """``(C, C)`` counts on the trusted rows: row = clean class, column = given label;
    None when the trusted set was separate (its rows carry no given label)."""
    trusted = result.trusted_indices
    if len(trusted) == 0:
        return None
    c = result.num_classes
    clean, given = result.labels[trusted], result.given_labels[trusted]
    return np.bincount(clean * c + given, minlength=c * c).reshape(c, c)


def _summary(result: "PurifyResult") -> str:
    meta = result.metadata
    rows = [("rows", f"{len(result):,}"), ("classes", f"{result.num_classes}"),
            ("labels changed", f"{result.num_changed:,} ({result.num_changed / max(1, len(result)):.1%})"),
            ("trusted set", f"{meta.get('num_trusted', len(result.trusted_indices)):,} rows"
             + ("" if len(result.trusted_indices) else " (a separate set)"))]
    if "label_accuracy_before" in meta:
        rows.append(("label accuracy (clean labels given)",
                     f"{meta['label_accuracy_before']:.2%} → {meta['label_accuracy_after']:.2%}"))
    estimate = result.accuracy_estimate
    rows.append(("estimated accuracy", estimate.describe() if estimate is not None else
                 "not estimated (purify with --estimate-accuracy for an estimate and its interval)"))
    rows.append(("residual noise (estimated)", f"{result.estimated_noise_rate():.1%} of the purified labels"))
    check = meta.get("feature_check")
    if isinstance(check, dict) and "accuracy" in check:
        rows.append(("feature check", f"probe {check['accuracy']:.1%} on the trusted rows (chance "
                     f"{check.get('chance', 0):.1%})" + ("; weak features" if check.get("weak") else "")))
    cells = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<h2>Summary</h2><table class="summary" id="summary">{cells}</table>'


def _trusted_sections(result: "PurifyResult", names: list[str]) -> str:
    counts = transition_counts(result)
    if counts is None:
        heat = ('<p class="muted">No transition matrix: the trusted set was separate, so its rows have no '
                "given label.</p>")
    else:
        heat = _heat_map(counts, names)
    return (f'<div class="cols"><section><h2>Noise transition on the trusted set</h2>{heat}</section>'
            f"<section><h2>Changes per class</h2>{_changes(result, names)}</section></div>")


def _heat_map(counts: np.ndarray, names: list[str]) -> str:
    totals = counts.sum(1, keepdims=True)
    share = counts / np.maximum(totals, 1)
    head = "".join(f'<th class="col" title="given {esc(n)}">{esc(n)}</th>' for n in names)
    lines = [f'<p class="muted">Row: the clean (verified) class; column: the given label. Each row sums to 1 '
             f"over its {int(totals.sum()):,} trusted rows.</p>",
             f'<table class="heat" id="transition"><tr><th></th>{head}</tr>']
    for i, name in enumerate(names):
        cells = []
        for j in range(len(names)):
            v = share[i, j]
            colour = f"rgba(37,99,235,{v:.3f})"
            ink = "#fff" if v > 0.5 else "#1f2937"
            cells.append(f'<td style="background:{colour};color:{ink}" title="clean {esc(name)}, given '
                         f'{esc(names[j])}: {counts[i, j]} of {totals[i, 0]}">{v:.2f}</td>'
                         if counts[i, j] else '<td title="none">·</td>')
        lines.append(f"<tr><th>{esc(name)}</th>{''.join(cells)}</tr>")
    return "".join(lines) + "</table>"


def _changes(result: "PurifyResult", names: list[str]) -> str:
    c = result.num_classes
    given = np.bincount(result.given_labels, minlength=c)
    purified = np.bincount(result.labels, minlength=c)
    away = np.bincount(result.given_labels[result.changed], minlength=c)
    into = np.bincount(result.labels[result.changed], minlength=c)
    widest = max(1, int(max(away.max(initial=0), into.max(initial=0))))
    lines = ['<table class="changes" id="changes"><tr><th>class</th><th>given</th><th>purified</th>'
             "<th>changed away</th><th>changed to</th></tr>"]
    for k, name in enumerate(names):
        bar = f'<span class="bar" style="width:{60 * away[k] / widest:.0f}px"></span>'
        lines.append(f"<tr><td>{esc(name)}</td><td>{given[k]:,}</td><td>{purified[k]:,}</td>"
                     f"<td>{away[k]:,} {bar}</td><td>{into[k]:,}</td></tr>")
    return "".join(lines) + "</table>"


def _gallery(result: "PurifyResult", images: "ImageDataset", rows: np.ndarray, names: list[str],
             thumbnail_size: int) -> str:
    options = "".join(f'<option value="{k}">{esc(n)}</option>' for k, n in enumerate(names))
    head = (f"<h2>Likeliest label errors</h2>"
            f'<p class="muted">The {len(rows):,} changed labels the purifier is surest were wrong (of '
            f"{result.num_changed:,} changed), most likely first. Confidence: the purifier's probability of "
            "the new label.</p>"
            '<div class="toolbar"><label>class <select id="class-filter"><option value="all">all classes</option>'
            f'{options}</select></label><label>as <select id="filter-by"><option value="either">given or '
            'purified label</option><option value="given">given label</option><option value="purified">purified '
            'label</option></select></label><span class="muted"><span id="shown-count">'
            f"{len(rows)}</span> shown</span></div>")
    cards = []
    for rank, i in enumerate(rows.tolist(), 1):
        g, p = int(result.given_labels[i]), int(result.labels[i])
        cards.append(
            f'<figure class="card" data-index="{i}" data-given="{g}" data-purified="{p}">'
            f'<img class="thumb" alt="row {i}" src="{thumbnail_uri(images.load_image(i), thumbnail_size)}">'
            f'<figcaption><div class="change">{esc(names[g])} → {esc(names[p])}</div>'
            f'<div class="meta"><span>confidence {result.confidence[i]:.2f}</span><span>#{i}</span></div>'
            f'<div class="meta"><span>rank {rank}</span></div></figcaption></figure>')
    if not cards:
        cards.append('<p class="muted">No label was changed.</p>')
    return head + '<div class="gallery" id="gallery">' + "".join(cards) + "</div>"
