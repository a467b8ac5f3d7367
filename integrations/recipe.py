"""Recipes: what ``dmlp integrate`` changes in one upstream clone, as data.

A :class:`Recipe` names the upstream, the commits it was tested on and the hashes of
the files it edits there, and lists its edits. Each edit finds its place by a short
*anchor* (a fragment of one line of the upstream file) and inserts or substitutes only
our own text, so no upstream code lives in this project. :mod:`dmlp_integrations.apply`
checks every anchor of every edit before it writes anything.

Three kinds of edit cover the four built-in upstreams:

* :class:`Insert`: our lines before or after the line holding an anchor;
* :class:`Replace`: one short fragment swapped for another (compatibility fixes such as
  ``it.next()`` -> ``next(it)``), with the exact number of occurrences expected;
* :class:`Py2Prints`: every Python 2 ``print`` statement of a file made a call.

Every line an edit touches ends with :data:`TAG`, so a reader of the patched clone sees
which lines are ours, and the applier can refuse a file that already carries them.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Literal

from dmlp_plugin.errors import DmlpError

__all__ = ["TAG", "RUNTIME_IMPORT", "IntegrationError", "Edit", "Insert", "Replace", "Py2Prints", "Recipe"]

#: Trailing comment on every line an edit writes.
TAG = "# dmlp-plugin"
#: The line recipes insert before their calls into :mod:`dmlp_integrations.runtime`.
RUNTIME_IMPORT = "import dmlp_integrations.runtime as dmlp_runtime"


class IntegrationError(DmlpError):
    """A clone cannot be integrated or reverted; the message names the file and the anchor."""


def _tagged(line: str, note: str = "") -> str:
    # A comment after a backslash continuation would end the statement early.
    if line.rstrip().endswith("\\"):
        return line
    suffix = f"{TAG}{': ' + note if note else ''}"
    return f"{line.rstrip()}  {suffix}" if line.strip() else line


def _split(text: str) -> tuple[list[str], str]:
    """Lines without their endings, and the file's newline (kept so edits match the file)."""
    newline = "\r\n" if "\r\n" in text else "\n"
    return text.split(newline), newline


class Edit:
    """Base class: an edit of one file. ``apply(text)`` returns the new text or raises."""

    file: str
    why: str

    def apply(self, text: str) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def _fail(self, message: str) -> IntegrationError:
        return IntegrationError(f"{self.file}: {message}")


@dataclass(frozen=True)
class Insert(Edit):
    """Insert ``lines`` before or after the one line that contains ``anchor``.

    Parameters
    ----------
    file
        Path of the upstream file, relative to the clone.
    anchor
        A fragment of the line to insert at. Without ``within`` exactly one line of the
        file may contain it, or exactly one line may equal it.
    lines
        Our lines, without the anchor line's indentation (relative indentation is kept).
    where
        ``"after"`` or ``"before"`` the anchor line.
    within
        A fragment of an earlier line (a ``def`` or ``class`` line, say): the anchor is
        the first line containing ``anchor`` after the first line containing ``within``.
    indent
        Indentation of the inserted lines; default: the anchor line's.
    """

    file: str
    anchor: str
    lines: tuple[str, ...]
    where: Literal["after", "before"] = "after"
    within: str | None = None
    indent: str | None = None
    why: str = ""

    def locate(self, lines: list[str]) -> int:
        start = 0
        if self.within is not None:
            scope = [i for i, line in enumerate(lines) if self.within in line]
            if not scope:
                raise self._fail(f"scope anchor {self.within!r} not found")
            start = scope[0] + 1
        hits = [i for i in range(start, len(lines)) if self.anchor in lines[i]]
        if not hits:
            where = f" after {self.within!r}" if self.within else ""
            raise self._fail(f"anchor {self.anchor!r} not found{where}")
        exact = [i for i in hits if lines[i].strip() == self.anchor.strip()]
        if self.within is None and len(hits) > 1 and len(exact) == 1:
            return exact[0]  # `import mlflow` beside `import mlflow.pytorch`
        if self.within is None and len(hits) > 1:
            raise self._fail(f"anchor {self.anchor!r} is ambiguous: it is on lines "
                             f"{', '.join(str(h + 1) for h in hits[:5])}")
        return hits[0]

    def apply(self, text: str) -> str:
        lines, newline = _split(text)
        at = self.locate(lines)
        anchor_line = lines[at]
        indent = self.indent if self.indent is not None else anchor_line[: len(anchor_line) - len(anchor_line.lstrip())]
        block = [_tagged(indent + line if line.strip() else line) for line in self.lines]
        at = at + 1 if self.where == "after" else at
        return newline.join(lines[:at] + block + lines[at:])

    def describe(self) -> str:
        return f"{self.file}: insert {len(self.lines)} line(s) {self.where} {self.anchor!r}"


@dataclass(frozen=True)
class Replace(Edit):
    """Replace every occurrence of ``old`` by ``new``; exactly ``count`` are expected.

    ``old`` must not span lines. Each changed line is tagged.
    """

    file: str
    old: str
    new: str
    count: int = 1
    why: str = ""

    def apply(self, text: str) -> str:
        if "\n" in self.old:
            raise self._fail(f"replacement anchor {self.old!r} spans lines")
        lines, newline = _split(text)
        found = sum(line.count(self.old) for line in lines)
        if found != self.count:
            raise self._fail(f"expected {self.count} occurrence(s) of {self.old!r}, found {found}")
        out = [_tagged(line.replace(self.old, self.new), "compat") if self.old in line else line for line in lines]
        return newline.join(out)

    def describe(self) -> str:
        return f"{self.file}: replace {self.old!r} -> {self.new!r} (x{self.count})"


@dataclass(frozen=True)
class Py2Prints(Edit):
    """Turn every Python 2 ``print`` statement of ``file`` into a call; ``count`` are expected.

    ``print x, y`` becomes ``print(x, y)`` and ``print x,`` becomes ``print(x, end=" ")``.
    Statements that span lines are wrapped whole. ``print >>f, x`` is refused.
    """

    file: str
    count: int
    why: str = "Python 2 print statements do not compile on Python 3"

    def apply(self, text: str) -> str:
        spans = self._statements(text)
        if len(spans) != self.count:
            raise self._fail(f"expected {self.count} Python 2 print statement(s), found {len(spans)}")
        lines, newline = _split(text)
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + len(newline))
        pos = lambda rc: offsets[rc[0] - 1] + rc[1]  # noqa: E731 - (row, col) -> offset
        out = text
        touched: set[int] = set()
        for (start, body_start, end, trailing_comma) in reversed(spans):
            a, b, e = pos(start), pos(body_start), pos(end)
            body = out[b:e]
            if trailing_comma:
                body = body.rstrip()[:-1].rstrip() + ', end=" "'
            out = out[:a] + "print(" + body + ")" + out[e:]
            touched.update(range(start[0], end[0] + 1))
        lines, _ = _split(out)
        # Tag the last line of each statement: a comment there is always legal.
        last_rows = {end[0] for (_, _, end, _) in spans}
        return newline.join(_tagged(line, "compat") if i + 1 in last_rows else line for i, line in enumerate(lines))

    def _statements(self, text: str) -> list[tuple[tuple[int, int], tuple[int, int], tuple[int, int], bool]]:
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
            raise self._fail(f"cannot tokenize: {exc}") from None
        spans = []
        starts_line = True
        i = 0
        skip = {tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.COMMENT}
        while i < len(tokens):
            tok = tokens[i]
            if tok.type in skip:
                i += 1
                continue
            if starts_line and tok.type == tokenize.NAME and tok.string == "print":
                nxt = tokens[i + 1]
                if nxt.type == tokenize.NEWLINE:  # a bare `print` printed an empty line
                    spans.append((tok.start, tok.end, tok.end, False))
                elif not (nxt.type == tokenize.OP and nxt.string in ("(", "=", ".")):
                    if nxt.type == tokenize.OP and nxt.string == ">>":
                        raise self._fail(f"line {tok.start[0]}: `print >>file` is not supported")
                    j = i + 1
                    last = tokens[j]
                    while tokens[j].type != tokenize.NEWLINE:
                        if tokens[j].type not in (tokenize.NL, tokenize.COMMENT):
                            last = tokens[j]
                        j += 1
                    comma = last.type == tokenize.OP and last.string == ","
                    spans.append((tok.start, nxt.start, last.end, comma))
                    i = j
                    continue
            starts_line = tok.type in (tokenize.NEWLINE,) or (tok.type == tokenize.OP and tok.string == ";")
            i += 1
        return spans

    def describe(self) -> str:
        return f"{self.file}: {self.count} Python 2 print statement(s) -> print()"


@dataclass(frozen=True)
class Recipe:
    """How to integrate dmlp-plugin into one upstream codebase.

    Attributes
    ----------
    method
        The adapter name this recipe belongs to (``dmlp integrate <method>``).
    upstream
        Repository URL.
    commits
        Commits the recipe is tested on.
    entry
        The training script, relative to the clone; ``--dmlp`` appears in its ``--help``.
    file_hashes
        sha256 of each edited file at ``commits[0]``, so ``--check`` can tell a tested
        snapshot from a modified or newer one.
    edits
        Applied in order; several may touch one file.
    workdir
        Folder, relative to the clone, the entry script is run from (ELR+ runs inside
        ``ELR_plus/``).
    """

    method: str
    upstream: str
    commits: tuple[str, ...]
    entry: str
    edits: tuple[Edit, ...]
    file_hashes: dict[str, str] = field(default_factory=dict)
    workdir: str = "."
    version: int = 1

    @property
    def files(self) -> list[str]:
        """The files the recipe edits, in first-edit order."""
        return list(dict.fromkeys(edit.file for edit in self.edits))

    def edits_for(self, file: str) -> list[Edit]:
        return [edit for edit in self.edits if edit.file == file]


_TAG_PATTERN = re.compile(re.escape(TAG))


def carries_tag(text: str) -> bool:
    """Whether ``text`` holds a line written by an edit."""
    return bool(_TAG_PATTERN.search(text))
