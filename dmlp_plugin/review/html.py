"""The pieces both pages are made of: one self-contained HTML document, its style, escaping.

Nothing is loaded from elsewhere (no CDN, no font, no framework): the style and the few
lines of script are in the page, and images are ``data:`` URIs, so a page opens offline,
from a file, in any browser. Every string that came from a user (class names, paths) goes
through :func:`esc`, and data handed to a script through :func:`script_json`.
"""

from __future__ import annotations

import html
import json
from typing import Any, Sequence

__all__ = ["esc", "script_json", "document", "STYLE"]

STYLE = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --accent:#2563eb; --bad:#b91c1c; --good:#047857; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 16px 24px 48px; max-width: 1400px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.muted { color: var(--muted); } .bad { color: var(--bad); } .good { color: var(--good); }
table { border-collapse: collapse; } td, th { padding: 3px 8px; text-align: right; }
th { font-weight: 600; } .summary td:first-child, .summary th { text-align: left; }
.summary td { border-bottom: 1px solid var(--line); text-align: left; }
.cols { display: flex; flex-wrap: wrap; gap: 32px; align-items: flex-start; }
.heat td { width: 44px; height: 30px; text-align: center; font-size: 12px; border: 1px solid #fff; }
.heat th { font-size: 12px; font-weight: 500; color: var(--muted); }
.heat th.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; height: 90px; }
.changes td:first-child, .changes th:first-child { text-align: left; }
.changes td { border-bottom: 1px solid var(--line); }
.bar { display: inline-block; height: 10px; background: var(--accent); vertical-align: middle; }
.toolbar { position: sticky; top: 0; background: #fff; padding: 8px 0; border-bottom: 1px solid var(--line);
           display: flex; flex-wrap: wrap; gap: 12px; align-items: center; z-index: 1; }
select, input[type=text], button { font: inherit; padding: 3px 6px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px;
           margin-top: 12px; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px; margin: 0; background: #fff; }
.card[hidden] { display: none; }
.card img { width: 100%; aspect-ratio: 1; object-fit: contain; image-rendering: pixelated;
            background: #f3f4f6; border-radius: 4px; }
.card figcaption { margin-top: 6px; font-size: 13px; }
.card .change { font-weight: 600; overflow-wrap: anywhere; }
.card .meta { color: var(--muted); font-size: 12px; display: flex; justify-content: space-between; }
.card.done { border-color: var(--good); box-shadow: 0 0 0 1px var(--good); }
.card .given { color: var(--muted); font-size: 12px; }
.choices { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 6px; }
.choices button { font-size: 12px; padding: 1px 5px; border: 1px solid var(--line); border-radius: 4px;
                  background: #f9fafb; cursor: pointer; }
.choices button.chosen { background: var(--good); color: #fff; border-color: var(--good); }
.card .given { display: none; } body.show-given .card .given { display: block; }
.card input[type=text] { width: 100%; margin-top: 4px; }
.card input.invalid { border-color: var(--bad); outline: 1px solid var(--bad); }
"""


def esc(value: Any) -> str:
    """``value`` as HTML text, quotes included (safe in attributes too)."""
    return html.escape(str(value), quote=True)


def script_json(value: Any) -> str:
    """JSON safe to place inside a ``<script>`` element (no ``</script>`` can close it early)."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def document(title: str, body: Sequence[str], script: str = "") -> str:
    """A whole HTML page: ``body`` parts in order, then ``script``."""
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        *body, f"<script>{script}</script>" if script else "", "</body>", "</html>", ""])
