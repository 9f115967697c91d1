"""report.html in a real headless browser (Chromium over the DevTools protocol): it renders,
every image loads, and nothing is logged to the console as an error. Skips when no Chromium is
installed. Set FRX_SCREENSHOT_DIR to keep the screenshot it takes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import run_frx

BROWSER = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium installed (apt install chromium)")


async def _inspect(ws_url: str, page: Path) -> dict:
    import aiohttp

    errors: list[str] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        ids = iter(range(1, 10_000))
        pending: dict[int, asyncio.Future] = {}
        loaded = asyncio.get_running_loop().create_future()

        async def pump() -> None:
            async for msg in ws:
                m = json.loads(msg.data)
                if "id" in m and m["id"] in pending:
                    pending.pop(m["id"]).set_result(m)
                method = m.get("method", "")
                if method == "Runtime.exceptionThrown":
                    errors.append(m["params"]["exceptionDetails"].get("text", "exception"))
                elif method == "Runtime.consoleAPICalled" and m["params"]["type"] == "error":
                    errors.append(str(m["params"]["args"]))
                elif method == "Log.entryAdded" and m["params"]["entry"]["level"] == "error":
                    errors.append(m["params"]["entry"]["text"])
                elif method == "Page.loadEventFired" and not loaded.done():
                    loaded.set_result(True)

        async def call(method: str, **params) -> dict:
            i = next(ids)
            pending[i] = asyncio.get_running_loop().create_future()
            await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
            return await asyncio.wait_for(pending[i], 30)

        task = asyncio.create_task(pump())
        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=1280, height=2400, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=page.as_uri())
        await asyncio.wait_for(loaded, 30)
        probe = ("JSON.stringify({images: Array.from(document.images).map(i => i.complete && i.naturalWidth > 0),"
                 " tables: document.querySelectorAll('table').length, title: document.title,"
                 " h2: Array.from(document.querySelectorAll('h2')).map(h => h.textContent),"
                 " height: document.body.scrollHeight})")
        res = await call("Runtime.evaluate", expression=probe, returnByValue=True)
        shot = await call("Page.captureScreenshot", format="png")
        task.cancel()
    return {**json.loads(res["result"]["result"]["value"]), "errors": errors, "png": base64.b64decode(shot["result"]["data"])}


def test_report_renders_in_a_browser(tmp_path):
    rows = []
    for i in range(40):
        toxic = i % 4 == 0
        label = ["full_compliance", "direct_refusal", "safe_partial_compliance"][i % 3]
        rows.append({"prompt": f"How do I kill a stuck process number {i}?", "response": f"Answer {i}: use kill <pid> & check.",
                     "label": label, "label_prompt": "toxic" if toxic else "benign", "model": ["m-a", "m-b"][i % 2],
                     "category": ["homonyms", "figurative"][i // 20], "confidence": 0.91, "label_source": "learned"})
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "judged.parquet")
    out = tmp_path / "report"
    r = run_frx("metrics", tmp_path / "judged.parquet", "--out", out, "--by", "category")
    assert r.returncode == 0, r.stderr
    profile = tmp_path / "profile"
    proc = subprocess.Popen([BROWSER, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.time() + 60
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if time.time() > deadline or proc.poll() is not None:
                pytest.fail("Chromium did not start its DevTools endpoint")
            time.sleep(0.2)
        port = port_file.read_text().splitlines()[0]
        import urllib.request

        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        seen = asyncio.run(_inspect(ws_url, out / "report.html"))
    finally:
        proc.kill()
        proc.wait()
    keep = os.environ.get("FRX_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / "report.png").write_bytes(seen["png"])
    assert seen["errors"] == []
    assert seen["title"] == "frx metrics" and seen["tables"] >= 3
    assert len(seen["images"]) == 2 and all(seen["images"])  # both plots, decoded
    assert "Examples: benign prompts the model refused" in seen["h2"] and "What the columns mean" in seen["h2"]
    assert seen["png"][:8] == b"\x89PNG\r\n\x1a\n" and seen["height"] > 500
