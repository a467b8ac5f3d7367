"""The marker an integration leaves at the clone's root: written by us, read as untrusted data.

``.dmlp-integration.json`` records which method was integrated, whether the integration
finished (``state``: ``in-progress`` until every file is in place, then ``done``) and, for
each edited file, its sha256 before and after and its original bytes (zlib, base64), so
``--revert`` is byte-exact. Anyone who can write the clone can edit the marker, so it is
validated field by field (:func:`parse`, :func:`check_files`), a bad field gives one line
naming it, and it never chooses what is written: ``--revert`` restores only files the
method's recipe edits, with their own permission bits, and only bytes whose hash matches.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from .recipe import IntegrationError, Recipe

__all__ = ["MARKER", "SCHEMA", "IN_PROGRESS", "DONE", "Marker", "Entry", "build", "parse", "check_files", "sha256"]

#: The marker file, at the root of an integrated clone.
MARKER = ".dmlp-integration.json"
#: Version of the marker's layout; markers without one were written before it was versioned.
SCHEMA = 2
IN_PROGRESS, DONE = "in-progress", "done"
#: An original larger than this is not a source file; decompression stops there.
MAX_ORIGINAL_BYTES = 64 << 20

_SHA = re.compile(r"[0-9a-f]{64}")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One edited file as the marker records it (``original`` is decoded and checked)."""

    original_sha256: str
    integrated_sha256: str
    original: bytes


@dataclass(frozen=True)
class Marker:
    method: str
    recipe_version: int
    state: str
    files: dict[str, Any]  # raw until check_files() decodes them into Entry


def _fail(field: str, problem: str) -> IntegrationError:
    return IntegrationError(f"{MARKER}: {field} {problem}; it was not written by dmlp integrate or was edited. "
                            f"Restore the clone with git (e.g. `git checkout -- .`) and delete {MARKER}")


def _pack(data: bytes) -> str:
    return base64.b64encode(zlib.compress(data, 9)).decode("ascii")


def build(recipe: Recipe, version: str, changes: list[tuple[str, bytes, bytes]], state: str) -> bytes:
    """The marker of an integration of ``recipe``; ``changes`` are ``(path, before, after)``."""
    files = {rel: {"original_sha256": sha256(before), "integrated_sha256": sha256(after), "original": _pack(before)}
             for rel, before, after in changes}
    record = {"schema": SCHEMA, "state": state, "method": recipe.method, "recipe_version": recipe.version,
              "dmlp_plugin_version": version, "upstream": recipe.upstream, "tested_commits": list(recipe.commits),
              "edits": [edit.describe() for edit in recipe.edits], "files": files}
    return json.dumps(record, indent=1).encode("utf-8")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse(raw: bytes) -> Marker:
    """Read the marker's header fields; the file entries are checked by :func:`check_files`."""
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail("content", f"is not JSON ({exc})") from None
    if not isinstance(record, dict):
        raise _fail("content", "is not a JSON object")
    schema = record.get("schema", 1)
    if schema not in (1, SCHEMA) or not _int(schema):
        raise _fail("field 'schema'", f"is {schema!r}; this dmlp-plugin reads 1 and {SCHEMA}")
    method = record.get("method")
    if not isinstance(method, str) or not method.isidentifier():
        raise _fail("field 'method'", f"is {method!r}, not an adapter name")
    version = record.get("recipe_version")
    if not _int(version):
        raise _fail("field 'recipe_version'", f"is {version!r}, not an integer")
    state = record.get("state", DONE if schema == 1 else None)  # version 1 markers were written last
    if state not in (IN_PROGRESS, DONE):
        raise _fail("field 'state'", f"is {state!r}, not {IN_PROGRESS!r} or {DONE!r}")
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        raise _fail("field 'files'", "is not a table of edited files")
    return Marker(method, version, state, files)


def _unpack(text: Any, field: str) -> bytes:
    if not isinstance(text, str):
        raise _fail(field, f"is {type(text).__name__}, not text")
    try:
        packed = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        data = inflater.decompress(packed, MAX_ORIGINAL_BYTES + 1)
    except (UnicodeEncodeError, binascii.Error, ValueError, zlib.error) as exc:
        raise _fail(field, f"is not zlib data in base64 ({exc})") from None
    if len(data) > MAX_ORIGINAL_BYTES or inflater.unconsumed_tail:
        raise _fail(field, f"inflates past {MAX_ORIGINAL_BYTES >> 20} MiB")
    if not inflater.eof:
        raise _fail(field, "is truncated")
    return data


def check_files(marker: Marker, recipe: Recipe) -> dict[str, Entry]:
    """The marker's file entries, decoded, after checking every field against ``recipe``.

    Only files the recipe edits may be listed; each entry needs both hashes and an original
    whose hash is the recorded one.
    """
    allowed = set(recipe.files)
    entries = {}
    for rel, raw in marker.files.items():
        if rel not in allowed:
            raise _fail("field 'files'", f"lists {rel!r}, which the {recipe.method} recipe does not edit")
        if not isinstance(raw, dict):
            raise _fail(f"entry files[{rel!r}]", "is not a table")
        hashes = {}
        for key in ("original_sha256", "integrated_sha256"):
            value = raw.get(key)
            if not isinstance(value, str) or not _SHA.fullmatch(value):
                raise _fail(f"field files[{rel!r}].{key}", f"is {str(value)[:80]!r}, not a sha256")
            hashes[key] = value
        original = _unpack(raw.get("original"), f"field files[{rel!r}].original")
        if sha256(original) != hashes["original_sha256"]:
            raise _fail(f"field files[{rel!r}].original", "does not match its original_sha256")
        entries[rel] = Entry(hashes["original_sha256"], hashes["integrated_sha256"], original)
    return entries
