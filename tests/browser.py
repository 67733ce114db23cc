"""Debian's headless Chromium for the page tests, driven through the DevTools protocol over a pipe.

``--remote-debugging-pipe`` makes Chromium read commands on its fd 3 and write answers and events on its
fd 4, each a JSON message ended by a NUL byte, so no websocket package is needed. WebGL runs in software
(SwiftShader). :func:`check_page` is what every page test asserts: each volume's cell shows shape pixels,
the console shows no error and no request left the page.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-swiftshader",
    "--use-angle=swiftshader",
    "--remote-debugging-pipe",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-component-update",
    "--disable-background-networking",
    "--disable-sync",
    "--mute-audio",
    "--hide-scrollbars",
    "--window-size=1280,900",
]
VIEWPORT = (1280, 900)
SKIP_REASON = (
    "needs Debian's chromium (make install adds it where apt-get runs as root): the pages are tested in a "
    "real browser"
)


def find_chromium() -> str | None:
    """The chromium executable, or None (also without bash, which hands it the pipe)."""
    if shutil.which("bash") is None:
        return None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def shape_pixels(image: np.ndarray) -> int:
    """Pixels of (H, W, 3) uint8 that show a volume's blocks: blue (the page's block colour, lit or
    shaded), not the cell's grey background or floor."""
    rgb = image.astype(np.int32)
    return int(((rgb[..., 2] - rgb[..., 0] > 40) & (rgb[..., 2] > 90)).sum())


class Browser:
    """One headless Chromium; :meth:`open` gives a :class:`Page` (a tab) on a URL."""

    def __init__(self, executable: str, profile: Path):
        to_browser_read, self.to_browser = os.pipe()
        self.from_browser, from_browser_write = os.pipe()
        self.process = subprocess.Popen(
            [
                "bash",  # dash takes only one-digit file descriptors in redirections
                "-c",
                f'exec "$0" "$@" 3<&{to_browser_read} 4>&{from_browser_write}',
                executable,
                *FLAGS,
                f"--user-data-dir={profile}",
                "about:blank",
            ],
            pass_fds=(to_browser_read, from_browser_write),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict] = []

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Ask Chromium to quit; kill it if it does not within 10 s."""
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close", timeout=5)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout=60.0):
        """Send one command and return its result; events that arrive meanwhile go to ``self.events``."""
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self.to_browser, data) :]
        deadline = time.monotonic() + timeout
        while True:
            answer = self.receive(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self.events.append(answer)

    def receive(self, deadline: float) -> dict:
        """The next message from Chromium; TimeoutError after ``deadline`` (time.monotonic)."""
        while b"\0" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"chromium closed its pipe (exit code {self.process.poll()})")
                self.buffer += chunk
        message, _, self.buffer = self.buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str) -> Page:
        """A new tab on ``url`` with the console, log and network recorded from before the page loads."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        for domain in ("Runtime", "Log", "Network", "Page"):
            page.call(f"{domain}.enable")
        width, height = VIEWPORT
        page.call(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        page.call("Page.navigate", url=url)
        page.wait_for("document.readyState === 'complete'")
        return page


class Page:
    """A tab of :class:`Browser`."""

    def __init__(self, browser: Browser, session: str, target: str):
        self.browser, self.session, self.target = browser, session, target

    def call(self, method: str, **params):
        return self.browser.send(method, params, self.session)

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0):
        """Poll ``expression`` until it is truthy; its value. AssertionError naming it after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {timeout} s for {expression}; errors: {self.console_errors()}")
            time.sleep(0.05)

    def frames(self) -> int:
        """How many times the viewer has drawn."""
        return int(self.evaluate("Number(document.documentElement.dataset.voxganFrames || 0)"))

    def wait_for_frame(self, after: int) -> None:
        """Wait until the viewer has drawn a frame after its ``after``-th (or reported an error)."""
        self.wait_for(
            f"Number(document.documentElement.dataset.voxganFrames || 0) > {after} || "
            "document.documentElement.dataset.voxganError"
        )

    def my_events(self) -> list[dict]:
        return [event for event in self.browser.events if event.get("sessionId") == self.session]

    def console_errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and browser log errors of this page, one line each."""
        lines = []
        for event in self.my_events():
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                lines.append(details.get("exception", {}).get("description") or details.get("text"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                lines.append(
                    " ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"])
                )
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                lines.append(f"{params['entry'].get('text')} ({params['entry'].get('url', '')})")
        return lines

    def requests(self) -> list[str]:
        """Every URL this page asked for."""
        return [
            event["params"]["request"]["url"]
            for event in self.my_events()
            if event.get("method") == "Network.requestWillBeSent"
        ]

    def screenshot(self) -> np.ndarray:
        """The viewport as (H, W, 3) uint8."""
        from PIL import Image

        data = self.call("Page.captureScreenshot", format="png")["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def cell_boxes(self) -> list[tuple[int, int, int, int, int]]:
        """(cell index, left, top, right, bottom) in viewport pixels of every volume's view."""
        boxes = self.evaluate(
            "JSON.stringify([...document.querySelectorAll('.view[data-cell]')].map(e => {"
            "const r = e.getBoundingClientRect();"
            "return [Number(e.dataset.cell), r.left, r.top, r.right, r.bottom]; }))"
        )
        return [(int(i), round(a), round(b), round(c), round(d)) for i, a, b, c, d in json.loads(boxes)]

    def scroll_to(self, y: int) -> None:
        """Scroll to ``y`` and wait for the viewer to draw there."""
        frames = self.frames()
        self.evaluate(f"window.scrollTo(0, {y}); window.dispatchEvent(new Event('scroll'))")
        self.wait_for_frame(frames)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        """Press the left button at ``start``, move to ``end`` in ``steps``, release; wait for a frame."""
        frames = self.frames()
        points = [
            (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
            for t in np.linspace(0, 1, steps + 1)
        ]
        self.call(
            "Input.dispatchMouseEvent",
            type="mousePressed",
            x=start[0],
            y=start[1],
            button="left",
            buttons=1,
            clickCount=1,
        )
        for x, y in points[1:]:
            self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y, button="left", buttons=1)
        self.call(
            "Input.dispatchMouseEvent",
            type="mouseReleased",
            x=end[0],
            y=end[1],
            button="left",
            buttons=0,
            clickCount=1,
        )
        self.wait_for_frame(frames)

    def cell_pixels(self) -> dict[int, np.ndarray]:
        """Every cell's view as (h, w, 3) uint8, scrolling down the page a viewport at a time."""
        height = VIEWPORT[1]
        bottom = int(self.evaluate("document.documentElement.scrollHeight")) - height
        pixels: dict[int, np.ndarray] = {}
        for y in [*range(0, max(bottom, 0), height - 250), max(bottom, 0)]:
            self.scroll_to(y)
            image = self.screenshot()
            for index, left, top, right, low in self.cell_boxes():
                if (
                    index not in pixels
                    and left >= 0
                    and top >= 0
                    and right <= image.shape[1]
                    and low <= height
                ):
                    pixels[index] = image[top:low, left:right]
        return pixels


def page_volumes(path: Path) -> list[np.ndarray]:
    """The volumes a page holds, decoded from its data: (R, R, R) bool each, in cell order."""
    text = Path(path).read_text(encoding="utf-8")
    start = text.index('<script type="application/json" id="voxgan-data">')
    data = json.loads(text[text.index(">", start) + 1 : text.index("</script>", start)])
    return [
        np.unpackbits(np.frombuffer(base64.b64decode(cell["v"]), np.uint8))[: cell["r"] ** 3]
        .astype(bool)
        .reshape((cell["r"],) * 3)
        for cell in data["cells"]
    ]


def captions(page: Page) -> list[str]:
    """The caption under each volume, in cell order."""
    return page.evaluate("[...document.querySelectorAll('.cell .caption')].map(e => e.innerText)")


def check_page(browser: Browser, path: Path, cells: int, min_pixels: int = 30, empty=frozenset()) -> Page:
    """Open ``path`` from disk and assert what every page promises; returns the open page.

    Exactly ``cells`` volumes, each cell showing at least ``min_pixels`` shape pixels (the cells in
    ``empty``: none); no console error, no error reported by the viewer; no request but the page itself
    and the Blob URL of three.js.
    """
    url = Path(path).resolve().as_uri()
    page = browser.open(url)
    page.wait_for_frame(0)
    assert page.evaluate("document.documentElement.dataset.voxganError || ''") == ""
    pixels = page.cell_pixels()
    assert sorted(pixels) == list(range(cells)), f"cells seen: {sorted(pixels)}, expected {cells}"
    counts = {index: shape_pixels(image) for index, image in pixels.items()}
    blank = [index for index, count in counts.items() if count < min_pixels and index not in empty]
    assert not blank, f"cells without shape pixels: {blank} (counts {counts})"
    assert all(counts[index] == 0 for index in empty), {index: counts[index] for index in empty}
    assert page.console_errors() == []
    outside = [u for u in page.requests() if u != url and not u.startswith(("blob:", "data:"))]
    assert outside == [], f"requests that left the page: {outside}"
    return page
