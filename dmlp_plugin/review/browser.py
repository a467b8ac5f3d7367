"""A headless Chromium driven over the DevTools protocol, for screenshots of the pages.

Chromium is started with ``--remote-debugging-pipe``: the protocol's JSON messages
travel over two pipes (the child's file descriptors 3 and 4, each message ended by a NUL
byte), so nothing but the standard library is needed: no driver binary whose version
must match the browser's, no websocket client, no port to open. Only a local
``chromium`` (or Chrome) executable; :func:`find_chromium` looks for one.

    >>> with Chromium() as browser:
    ...     browser.open("review.html")
    ...     browser.screenshot("review.png")
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import DmlpError, MissingFileError

__all__ = ["Chromium", "BrowserError", "find_chromium", "CHROMIUM_FLAGS"]

#: Headless, and quiet on a closed network: no background fetches, updates or sync.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio")

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


class BrowserError(DmlpError, RuntimeError):
    """The browser could not be started, or a protocol command failed."""


def find_chromium() -> str | None:
    """The path of a Chromium or Chrome executable: ``$DMLP_CHROMIUM``, else the first on
    ``PATH``; None when there is none."""
    named = os.environ.get("DMLP_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next((p for p in map(shutil.which, _NAMES) if p), None)


class Chromium:
    """One headless browser with one page; a context manager that closes it on exit.

    Parameters
    ----------
    executable : str, optional
        The browser; :func:`find_chromium` by default.
    width, height : int
        The page's viewport, in CSS pixels.
    timeout : float
        Seconds to wait for any one answer of the browser.
    """

    def __init__(self, executable: str | None = None, *, width: int = 1280, height: int = 900,
                 timeout: float = 30.0) -> None:
        exe = executable or find_chromium()
        if exe is None:
            raise MissingFileError("no Chromium or Chrome found (install Debian's chromium package, or set "
                                   "DMLP_CHROMIUM to the browser's path)")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="dmlp-chromium-")
        to_browser, self._write = _pipe_above(10)
        self._read, from_browser = _pipe_above(10)

        def child_fds() -> None:  # the protocol's pipe ends, where Chromium looks for them
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        try:
            self._proc = subprocess.Popen(
                [exe, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
                 f"--window-size={width},{height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                # close_fds would close 3 and 4 after child_fds ran; the parent's other descriptors
                # are not inheritable (PEP 446), so none but these reach the browser.
                preexec_fn=child_fds, close_fds=False)
        except OSError as exc:
            self._cleanup()
            raise BrowserError(f"cannot start {exe}: {exc}") from exc
        finally:
            os.close(to_browser)
            os.close(from_browser)
        self._buffer, self._next_id = b"", 0
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self._session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height,
                                                             "deviceScaleFactor": 1, "mobile": False}, page=True)
        except BaseException:
            self.close()
            raise

    # -- the protocol ------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = False) -> dict[str, Any]:
        """Send one command (to the page when ``page``, else to the browser); its result."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if page:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._write, data):]
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._receive(deadline)
            if answer.get("id") == self._next_id:  # events and other answers are not waited for
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error'].get('message', answer['error'])}")
                return answer.get("result", {})

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise BrowserError(f"the browser did not answer within {self.timeout:.0f} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise BrowserError("the browser closed its end of the protocol pipe (it exited)")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    # -- what a page needs ---------------------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, page=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"script failed: {details.get('exception', {}).get('description', details)}")
        return result.get("result", {}).get("value")

    def open(self, path: str | os.PathLike, *, wait_images: bool = True) -> None:
        """Load a local file and wait until the document, and its images, have loaded."""
        url = Path(path).resolve().as_uri()
        # Mark the current document, so that reopening the same URL cannot pass the check below
        # on the old document before the new one has replaced it.
        self.evaluate("window.__dmlpLeaving = true")
        self.send("Page.navigate", {"url": url}, page=True)
        ready = ("!window.__dmlpLeaving && location.href === %s && document.readyState === 'complete'"
                 % json.dumps(url)
                 + (" && Array.prototype.every.call(document.images, function (i) { return i.complete; })"
                    if wait_images else ""))
        self.wait_for(ready)

    def wait_for(self, expression: str, timeout: float | None = None) -> None:
        """Poll a JavaScript condition until it is true."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for: {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """Click the middle of the first element matching a CSS selector, as a mouse would."""
        box = self.evaluate("(function (e) { if (!e) return null; e.scrollIntoView({block: 'center'}); "
                            "var r = e.getBoundingClientRect(); return [r.left + r.width / 2, r.top + r.height / 2]; })"
                            f"(document.querySelector({json.dumps(selector)}))")
        if box is None:
            raise BrowserError(f"nothing on the page matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1}, page=True)

    def screenshot(self, path: str | os.PathLike, *, full_height: int | None = None) -> Path:
        """Write a PNG of the viewport (or of the page's top ``full_height`` pixels)."""
        from ..io import atomic_write

        params: dict[str, Any] = {"format": "png"}
        if full_height:
            width = self.evaluate("document.documentElement.clientWidth")
            params.update(clip={"x": 0, "y": 0, "width": width, "height": full_height, "scale": 1},
                          captureBeyondViewport=True)
        data = base64.b64decode(self.send("Page.captureScreenshot", params, page=True)["data"])
        with atomic_write(path) as fh:
            fh.write(data)
        return Path(path)

    # -- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Ask the browser to quit, then make sure it has; remove its profile folder."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                self.send("Browser.close")
            except (BrowserError, OSError):
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        for fd in (getattr(self, "_write", None), getattr(self, "_read", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._write = self._read = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pipe_above(lowest: int) -> tuple[int, int]:
    """A pipe whose two ends are numbered ``lowest`` or above, so that putting them at 3 and
    4 in the child cannot overwrite one with the other."""
    read, write = os.pipe()
    high = (fcntl.fcntl(read, fcntl.F_DUPFD_CLOEXEC, lowest), fcntl.fcntl(write, fcntl.F_DUPFD_CLOEXEC, lowest))
    os.close(read)
    os.close(write)
    return high
