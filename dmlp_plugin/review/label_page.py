"""``build_label_page``: a page on which a person verifies the labels of a few images.

Each card shows an image; the person clicks its class (up to :data:`MAX_BUTTONS`
classes) or types it (a name or a number, with the class names offered as they type).
"Save CSV" downloads the labelled rows in the columns of
:mod:`dmlp_plugin.trusted_csv`, which ``dmlp trusted --from-csv`` reads back. The given
label is hidden until asked for, so that it does not lead the eye; choices are kept in
the browser's local storage, so closing the page loses nothing.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..io import atomic_write, check_output_path
from .html import document, esc, script_json
from .images import THUMBNAIL_SIZE, image_location, thumbnail_uri, thumbnail_uri_bytes
from .review_page import Page

if TYPE_CHECKING:
    from ..data import ImageDataset

__all__ = ["build_label_page", "label_page_bytes", "MAX_BUTTONS"]

#: Up to this many classes, each card has one button per class; beyond, typing only.
MAX_BUTTONS = 20

_LABEL_SCRIPT = """
(function () {
  var classes = JSON.parse(document.getElementById('classes').textContent);
  var body = document.body, key = 'dmlp-label:' + body.dataset.page, chosen = {};
  try { chosen = JSON.parse(localStorage.getItem(key) || '{}'); } catch (e) { chosen = {}; }
  var cards = Array.prototype.slice.call(document.querySelectorAll('#cards .card'));
  function classOf(text) {
    text = String(text).trim();
    var lower = text.toLowerCase();
    for (var k = 0; k < classes.length; k++) if (classes[k].toLowerCase() === lower) return k;
    if (/^[0-9]+$/.test(text) && +text < classes.length) return +text;
    return null;
  }
  function count() {
    var n = cards.filter(function (c) { return chosen[c.dataset.index] !== undefined; }).length;
    document.getElementById('done-count').textContent = n;
  }
  function show(card) {
    var k = chosen[card.dataset.index], input = card.querySelector('input');
    card.classList.toggle('done', k !== undefined);
    card.querySelectorAll('.choices button').forEach(function (b) {
      b.classList.toggle('chosen', +b.dataset.class === k);
    });
    if (k !== undefined && document.activeElement !== input) input.value = classes[k];
  }
  function set(card, k) {
    if (k === null) delete chosen[card.dataset.index]; else chosen[card.dataset.index] = k;
    try { localStorage.setItem(key, JSON.stringify(chosen)); } catch (e) { /* private mode: keep in memory */ }
    show(card);
    count();
  }
  cards.forEach(function (card) {
    card.querySelectorAll('.choices button').forEach(function (b) {
      b.addEventListener('click', function () { set(card, +b.dataset.class); });
    });
    var input = card.querySelector('input');
    input.addEventListener('change', function () {
      var k = input.value.trim() ? classOf(input.value) : null;
      input.classList.toggle('invalid', input.value.trim() !== '' && k === null);
      if (k !== null || !input.value.trim()) set(card, k);
    });
    show(card);
  });
  function field(s) { s = String(s); return /[",\\r\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
  window.dmlpLabelCsv = function () {
    var lines = ['index,path,given_label,given_class,true_label'];
    cards.slice().sort(function (a, b) { return a.dataset.index - b.dataset.index; }).forEach(function (card) {
      var k = chosen[card.dataset.index], g = +card.dataset.given;
      lines.push([card.dataset.index, card.dataset.path, g, classes[g], k === undefined ? '' : classes[k]]
        .map(field).join(','));
    });
    return lines.join('\\n') + '\\n';
  };
  document.getElementById('save').addEventListener('click', function () {
    var link = document.createElement('a');
    link.href = URL.createObjectURL(new Blob([window.dmlpLabelCsv()], {type: 'text/csv'}));
    link.download = body.dataset.csv;
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  document.getElementById('show-given').addEventListener('change', function (e) {
    body.classList.toggle('show-given', e.target.checked);
  });
  count();
})();
"""


def build_label_page(images: "ImageDataset", indices: Sequence[int], given_labels: np.ndarray,
                     class_names: Sequence[str], output: str | os.PathLike, *, csv_name: str = "labelled.csv",
                     thumbnail_size: int = THUMBNAIL_SIZE, seed: int = 0) -> Page:
    """Write the labelling page for rows ``indices`` of ``images``.

    Parameters
    ----------
    images : ImageDataset
        Where the images are read from.
    indices : sequence of int
        Rows to verify (:func:`~dmlp_plugin.trusted.draw_to_label`).
    given_labels : np.ndarray
        ``(N,)`` given labels; shown only when the person asks for them.
    class_names : sequence of str
        Names of the ``C`` classes, by number.
    output : path
        The ``.html`` file (written atomically).
    csv_name : str
        File name the page's "Save CSV" button suggests.
    thumbnail_size : int
        Longest side of a thumbnail.
    seed : int
        The cards are shown in an order shuffled by this seed, so that the given classes do
        not come in runs (which would suggest the answer).
    """
    output = check_output_path(output, "page", suffixes=(".html", ".htm"))
    rows = np.asarray(indices, dtype=np.int64)
    html = _render(images, rows, given_labels, class_names, csv_name, seed,
                   lambda i: thumbnail_uri(images.load_image(i), thumbnail_size))
    with atomic_write(output, "w") as fh:
        fh.write(html)
    return Page(output, len(rows))


def label_page_bytes(images: "ImageDataset", indices: Sequence[int], given_labels: np.ndarray,
                     class_names: Sequence[str], *, csv_name: str = "labelled.csv",
                     thumbnail_size: int = THUMBNAIL_SIZE) -> int:
    """An upper bound of the size in bytes of :func:`build_label_page`'s page, without reading
    an image: the page itself, with every thumbnail as large as :func:`thumbnail_uri_bytes`
    allows (for images of the size an in-memory dataset's array says, or of any size). For
    the free-space check before the images are read."""
    known = None if images.images is None else (images.images.shape[2], images.images.shape[1])
    placeholder = "x" * thumbnail_uri_bytes(thumbnail_size, known)
    rows = np.asarray(indices, dtype=np.int64)
    return len(_render(images, rows, given_labels, class_names, csv_name, 0, lambda i: placeholder).encode())


def _render(images: "ImageDataset", rows: np.ndarray, given_labels: np.ndarray, class_names: Sequence[str],
            csv_name: str, seed: int, uri: Callable[[int], str]) -> str:
    """The page's HTML; ``uri(i)`` gives row ``i``'s thumbnail."""
    names = [str(n) for n in class_names]
    page_id = hashlib.sha256(rows.tobytes() + "\n".join(names).encode()).hexdigest()[:16]
    buttons = "".join(f'<button type="button" data-class="{k}">{esc(n)}</button>' for k, n in enumerate(names))
    cards = []
    for i in np.random.default_rng(seed).permutation(rows).tolist():
        g = int(given_labels[i])
        cards.append(
            f'<figure class="card" data-index="{i}" data-given="{g}" data-path="{esc(image_location(images, i))}">'
            f'<img class="thumb" alt="row {i}" src="{uri(i)}">'
            f'<figcaption><div class="meta"><span>#{i}</span></div><div class="given">given: {esc(names[g])}</div>'
            f'<input type="text" list="class-names" placeholder="class name or number" aria-label="true class of '
            f'row {i}">' + (f'<div class="choices">{buttons}</div>' if len(names) <= MAX_BUTTONS else "")
            + "</figcaption></figure>")
    datalist = "".join(f'<option value="{esc(n)}">' for n in names)
    body = [
        "<h1>Verify these labels</h1>",
        f'<p class="muted">{len(rows):,} images, drawn at random within each given class. Give each its true '
        "class by clicking or typing it; when done, save the CSV and run <code>dmlp trusted --from-csv "
        f"{esc(csv_name)} -o trusted.npy</code>. Label every image: skipping the hard ones would bias the "
        "trusted set. Your choices are kept in this browser until you save.</p>",
        f'<div class="toolbar"><button type="button" id="save">Save CSV</button><span><span id="done-count">0'
        f'</span> / {len(rows):,} labelled</span><label><input type="checkbox" id="show-given"> show the given '
        "labels</label></div>",
        f'<datalist id="class-names">{datalist}</datalist>',
        f'<script type="application/json" id="classes">{script_json(names)}</script>',
        '<div class="gallery" id="cards">' + "".join(cards) + "</div>"]
    html = document("Verify labels", body, _LABEL_SCRIPT)
    return html.replace("<body>", f'<body data-page="{page_id}" data-csv="{esc(csv_name)}">', 1)
