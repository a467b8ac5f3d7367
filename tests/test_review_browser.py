"""The review and labelling pages in a real headless Chromium (one browser for the module).

Chromium comes from Debian's ``chromium`` package, which ``.ci/run`` installs where it is
missing; the tests skip, saying so, only where none can be found.
"""

from __future__ import annotations

import struct
import time

import numpy as np
import pytest
from review_fixtures import image_folder, ranked_result

from dmlp_plugin.review import build_label_page, build_review_page, image_location, open_images
from dmlp_plugin.review.browser import Chromium, find_chromium
from dmlp_plugin.trusted_csv import read_labelled_csv

pytestmark = pytest.mark.skipif(find_chromium() is None, reason=(
    "no Chromium to render the pages: apt-get install chromium (as .ci/run does), or set DMLP_CHROMIUM"))

VISIBLE = ("Array.prototype.filter.call(document.querySelectorAll('{0} .card'), "
           "function (c) {{ return c.offsetParent !== null; }})")
WIDTHS = "Array.prototype.map.call(document.images, function (i) { return i.naturalWidth; })"


@pytest.fixture(scope="module")
def browser():
    with Chromium(width=1280, height=1000) as chromium:
        yield chromium


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return open_images(image_folder(tmp_path_factory.mktemp("imgs"), per_class=12))


def choose(browser, select_id: str, value: str) -> None:
    """Pick an option as a person would: set it, then the change event the page listens to."""
    browser.evaluate(f"(function (s) {{ s.value = '{value}'; s.dispatchEvent(new Event('change')); }})"
                     f"(document.getElementById('{select_id}'))")


def test_review_page_renders_with_images_cards_and_a_working_filter(browser, images, tmp_path):
    result = ranked_result(images.targets, 3, changed_every=2, trusted=np.arange(0, 36, 4))
    page = build_review_page(result, images, tmp_path / "review.html", top_k=12)
    browser.open(page.path)
    assert browser.evaluate("document.title") == "What purification changed"
    assert browser.evaluate("document.querySelectorAll('#gallery .card').length") == 12
    widths = browser.evaluate("Array.prototype.map.call(document.querySelectorAll('#gallery img'), "
                              "function (i) { return i.naturalWidth; })")
    assert len(widths) == 12 and min(widths) == 40  # every thumbnail decoded, at its own size
    assert browser.evaluate("document.querySelectorAll('#transition td').length") == 9
    assert "<em>ship" in browser.evaluate("document.getElementById('summary').parentNode.innerText")

    shown = result.label_issues[:12]
    for c in range(3):
        for by, rows in (("given", result.given_labels[shown] == c), ("purified", result.labels[shown] == c),
                         ("either", (result.given_labels[shown] == c) | (result.labels[shown] == c))):
            choose(browser, "filter-by", by)
            choose(browser, "class-filter", str(c))
            visible = browser.evaluate(VISIBLE.format("#gallery") + ".map(function (c) { return +c.dataset.index; })")
            assert visible == shown[rows].tolist(), (c, by)
            assert browser.evaluate("+document.getElementById('shown-count').textContent") == int(rows.sum())
    choose(browser, "class-filter", "all")
    assert browser.evaluate(VISIBLE.format("#gallery") + ".length") == 12

    png = browser.screenshot(tmp_path / "review.png", full_height=1400)
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1280, 1400)


def test_label_page_clicks_and_typing_make_the_csv_from_csv_reads(browser, images, tmp_path):
    rows = np.array([1, 5, 14, 20, 30])
    names = list(images.classes)
    page = build_label_page(images, rows, images.targets, names, tmp_path / "to_label.html")
    browser.open(page.path)
    assert browser.evaluate("document.querySelectorAll('#cards .card').length") == 5
    assert min(browser.evaluate(WIDTHS)) > 0
    assert browser.evaluate("getComputedStyle(document.querySelector('.card .given')).display") == "none"
    browser.evaluate("localStorage.clear()")
    truth = {1: 2, 5: 0, 14: 1, 20: 1}
    for i, k in truth.items():
        browser.click(f'.card[data-index="{i}"] button[data-class="{k}"]')
    # the last one is typed, by name in another case
    browser.evaluate("(function (input) { input.value = 'DOG'; input.dispatchEvent(new Event('change')); })"
                     "(document.querySelector('.card[data-index=\"30\"] input'))")
    truth[30] = names.index("dog")
    assert browser.evaluate("+document.getElementById('done-count').textContent") == 5
    assert browser.evaluate("document.querySelectorAll('.card.done').length") == 5

    # Choices survive a reload (local storage). Chromium hands a write to a new document
    # asynchronously, so a reload at once may still read the old storage: reload until it
    # shows, for at most a few seconds.
    deadline = time.monotonic() + 5
    while True:
        browser.open(page.path)
        done = browser.evaluate("+document.getElementById('done-count').textContent")
        if done == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert done == 5
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.click("#save")  # the button a person presses: the browser saves labelled.csv
    deadline = time.monotonic() + 20
    while not (downloads / "labelled.csv").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    back = read_labelled_csv(downloads / "labelled.csv")
    assert back.indices.tolist() == sorted(truth) and back.labels.tolist() == [truth[i] for i in sorted(truth)]
    assert back.class_names == names and back.given.tolist() == images.targets[sorted(truth)].tolist()
    lines = (downloads / "labelled.csv").read_text().splitlines()
    assert lines[1].split(",")[1] == image_location(images, 1)
