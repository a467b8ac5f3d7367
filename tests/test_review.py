"""``dmlp review`` and the page it writes, read as HTML (the browser test renders it)."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image
from review_fixtures import cifar_folder, image_folder, ranked_result

from dmlp_plugin.cli import main
from dmlp_plugin.data.layouts import write_cifar10_layout
from dmlp_plugin.errors import InputError, ShapeError
from dmlp_plugin.review import build_review_page, open_images, thumbnail_uri, transition_counts


def cards(html: str) -> list[dict[str, str]]:
    """The gallery's cards, in page order, with their data attributes."""
    return [dict(re.findall(r'data-(\w+)="([^"]*)"', m)) for m in re.findall(r'<figure class="card"([^>]*)>', html)]


@pytest.fixture
def folder(tmp_path):
    images = open_images(image_folder(tmp_path / "imgs"))
    trusted = np.array([0, 1, 10, 11, 20, 21])
    return images, ranked_result(images.targets, 3, trusted=trusted)


def test_gallery_shows_the_top_k_issues_in_rank_order(folder, tmp_path):
    images, result = folder
    page = build_review_page(result, images, tmp_path / "review.html", top_k=4)
    html = page.path.read_text()
    shown = cards(html)
    assert page.cards == 4 and len(shown) == 4
    assert [int(c["index"]) for c in shown] == result.label_issues[:4].tolist()
    for card in shown:
        i = int(card["index"])
        assert int(card["given"]) == result.given_labels[i] and int(card["purified"]) == result.labels[i]
    all_cards = build_review_page(result, images, tmp_path / "all.html", top_k=500)
    assert all_cards.cards == result.num_changed == 10


def test_page_is_self_contained_and_escapes_names(folder, tmp_path):
    images, result = folder
    html = build_review_page(result, images, tmp_path / "review.html").path.read_text()
    assert not re.search(r"(src|href)=\"(?!data:)", html) and "http" not in html  # nothing to fetch
    assert "<em>ship" not in html and "&lt;em&gt;ship" in html
    assert f"{result.num_changed:,} (" in html and "6 rows" in html  # summary: changes, trusted set
    for uri in re.findall(r'src="(data:image/[^"]+)"', html):  # every thumbnail decodes
        Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).verify()


def test_transition_matrix_is_counted_on_the_trusted_rows():
    given = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    result = ranked_result(given, 3, changed_every=100, trusted=[0, 1, 2, 3, 4, 5])
    result.labels[:6] = [0, 2, 1, 0, 2, 2]  # trusted rows carry their clean label: 1 is really 2, 3 is 0
    counts = transition_counts(result)
    # row = clean class, column = given label
    assert counts.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    assert transition_counts(ranked_result(given, 3)) is None  # a separate trusted set has no given labels


def test_thumbnails_shrink_large_images_and_keep_small_ones():
    small = Image.new("RGB", (32, 32), (10, 20, 30))
    assert thumbnail_uri(small).startswith("data:image/png")
    big = thumbnail_uri(Image.new("RGB", (640, 320), (200, 10, 10)), 96)
    image = Image.open(io.BytesIO(base64.b64decode(big.split(",", 1)[1])))
    assert big.startswith("data:image/jpeg") and image.size == (96, 48)


@pytest.mark.parametrize("layout", ["cifar", "pickles", "cdr-npy"])
def test_images_open_in_every_cifar_layout(tmp_path, layout):
    root, labels = cifar_folder(tmp_path / "src")
    if layout != "cifar":
        write_cifar10_layout(root, layout, tmp_path / "out")
        root = tmp_path / "out"
    images = open_images(root)
    assert len(images) == len(labels) and (images.targets == labels).all()
    assert np.asarray(images.load_image(3)).shape == (32, 32, 3)


def test_mismatched_images_are_refused(folder, tmp_path):
    images, result = folder
    short = ranked_result(images.targets[:-1], 3)
    with pytest.raises(ShapeError, match="the images hold 30 rows but the purified labels 29"):
        build_review_page(short, images, tmp_path / "r.html")
    with pytest.raises(InputError, match="top_k must be a count >= 0"):
        build_review_page(result, images, tmp_path / "r.html", top_k=-1)
    assert not (tmp_path / "r.html").exists()


def test_cli_writes_the_page_and_names_bad_input(folder, tmp_path, capsys):
    images, result = folder
    result.save(tmp_path / "purified.npz")
    args = ["review", str(tmp_path / "purified.npz"), "--images", str(tmp_path / "imgs")]
    assert main([*args, "--top-k", "3", "-o", str(tmp_path / "review.html")]) == 0
    assert "3 of 10 changed labels shown" in " ".join(capsys.readouterr().out.split())
    assert len(cards((tmp_path / "review.html").read_text())) == 3
    assert main([*args, "-o", str(tmp_path / "review.png")]) == 2
    assert "--output must end in .html" in capsys.readouterr().err
    assert main(["review", str(tmp_path / "nope.npz"), "--images", str(tmp_path / "imgs"), "-o",
                 str(tmp_path / "r.html")]) == 2
    assert "purified-label file not found" in capsys.readouterr().err
