"""report.html in a real browser: headless Chromium, driven over its DevTools protocol (``--remote-debugging-
pipe``: JSON messages on file descriptors 3 and 4, nothing but the standard library and the installed
browser). Every image loads, nothing is fetched from the network, the console stays free of errors and the
page is not blank.

Marked ``browser``; skipped when no Chromium is installed (Debian: ``apt-get install --no-install-recommends
chromium``; or point ``$POWERTRAIN_CHROMIUM`` at a binary). Run it alone with
``.venv/bin/python -m pytest -m browser``.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pandas")
pytest.importorskip("matplotlib")

pytestmark = pytest.mark.browser

# the flags a closed machine needs: no sandbox (root), no GPU, and no connection Chromium makes by itself
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
         "--window-size=1280,900")


def _browser() -> str | None:
    found = os.environ.get("POWERTRAIN_CHROMIUM")
    if found:
        return found
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """One Chromium and its DevTools protocol over the pipe: ``call`` a method, read the ``events``."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser, self._in = os.pipe()  # Chromium reads commands on its fd 3
        self._out, from_browser = os.pipe()  # and writes replies and events on its fd 4

        def fds() -> None:  # in the child, before exec: the pipe ends at the numbers Chromium expects
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        self.proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=fds,
                                     pass_fds=(3, 4))
        os.close(to_browser)
        os.close(from_browser)
        self.events: list[dict[str, Any]] = []
        self._replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self._next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._out, 1 << 16)
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                (self._replies.put if "id" in msg else self.events.append)(msg)

    def call(self, method: str, session: str | None = None, timeout_s: float = 30, **params: Any) -> Any:
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._in, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            reply = self._replies.get(timeout=max(deadline - time.monotonic(), 0.01))
            if reply["id"] == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, method: str, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.events:
                if e.get("method") == method:
                    return e
            time.sleep(0.05)
        raise TimeoutError(f"no {method} within {timeout_s} s")

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._in)


PAGE_FACTS = """JSON.stringify({
  images: [...document.images].map(i => ({alt: i.alt, complete: i.complete, width: i.naturalWidth})),
  title: document.title, headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
  text: document.body.innerText.length, height: document.body.scrollHeight,
  tables: document.querySelectorAll('table').length,
  resources: performance.getEntriesByType('resource').map(r => r.name)})"""


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium installed (apt-get install --no-install-recommends chromium)")
    return binary


@pytest.fixture(scope="module")
def report_html(tmp_path_factory) -> Path:
    from powertrain import report
    from test_report import _grid_of

    root = _grid_of(tmp_path_factory.mktemp("browser") / "2026-11-22" / "10-00-00", 12)
    return report.write_report(root)


def test_report_html_renders_in_headless_chromium(chromium: str, report_html: Path, tmp_path: Path) -> None:
    tools = DevTools(chromium, tmp_path / "profile")
    try:
        target = tools.call("Target.createTarget", url="about:blank")["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            tools.call(f"{domain}.enable", session)
        tools.events.clear()
        tools.call("Page.navigate", session, url=report_html.as_uri())
        tools.wait_for("Page.loadEventFired")
        facts = json.loads(tools.call("Runtime.evaluate", session, expression=PAGE_FACTS,
                                      returnByValue=True)["result"]["value"])
        shot = tools.call("Page.captureScreenshot", session, format="png", captureBeyondViewport=True)
        (tmp_path / "report.png").write_bytes(base64.b64decode(shot["data"]))
        events = list(tools.events)
    finally:
        tools.close()

    # every image decoded (an <img> that failed has naturalWidth 0), and there are the report's figures
    assert len(facts["images"]) >= 4 and all(i["complete"] and i["width"] > 0 for i in facts["images"]), facts
    # nothing fetched: every request the page made is the file itself or an embedded data: image
    requested = [e["params"]["request"]["url"] for e in events if e.get("method") == "Network.requestWillBeSent"]
    fetched = [u for u in requested + facts["resources"] if not u.startswith(("data:", "file:"))]
    assert not fetched, fetched
    # no console errors and no exceptions
    errors = [e for e in events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"].get("type") == "error")
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"].get("level") == "error")]
    assert not errors, errors
    # not blank: the title, the sections, the tables and a page taller than one screen
    assert facts["title"].startswith("powertrain report:") and "Overview" in facts["headings"]
    assert facts["tables"] >= 3 and facts["text"] > 1000 and facts["height"] > 900, facts
    assert (tmp_path / "report.png").stat().st_size > 20_000  # a screenshot of a blank page is tiny
