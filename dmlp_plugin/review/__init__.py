"""Pages for looking at labels: what purification changed, and verifying a trusted set.

    >>> from dmlp_plugin import PurifyResult
    >>> from dmlp_plugin.review import build_review_page, open_images
    >>> build_review_page(PurifyResult.load("purified.npz"), open_images("~/data/cifar10"), "review.html")

Each page is one self-contained HTML file (styles, script and thumbnails inlined), so it
opens offline in any browser. ``dmlp review`` and ``dmlp trusted --to-label`` write them.
"""

from __future__ import annotations

from .images import THUMBNAIL_SIZE, image_location, open_images, thumbnail_uri
from .label_page import MAX_BUTTONS, build_label_page, label_page_bytes
from .review_page import DEFAULT_TOP_K, Page, build_review_page, class_names_for, transition_counts

__all__ = ["build_review_page", "build_label_page", "label_page_bytes", "open_images", "thumbnail_uri", "image_location",
           "class_names_for", "transition_counts", "Page", "DEFAULT_TOP_K", "THUMBNAIL_SIZE", "MAX_BUTTONS"]
