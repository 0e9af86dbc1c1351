#!/usr/bin/env python3
"""Publish-to-pixel latency in a real browser.

Starts `jobwire serve`, opens the dashboard in headless Chromium (Debian's /usr/bin/chromium,
driven by Playwright), then publishes N updates one at a time over HTTP, each a new job, paced
so no two share a frame. The page notes, for each job, the wall time of the first animation
frame after its row appeared (a MutationObserver, then requestAnimationFrame: the frame that
paints it). Latency = that time - the time just before the publish request was sent. Same
machine, same clock.

Writes the result file to --out (default benchmarks/results/browser_latency-<UTC time>.json).

    .venv/bin/python benchmarks/browser_latency.py [--updates 100] [--interval 0.05] [--json]
        [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
from playwright.async_api import async_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import start_server  # the same server helper as the tests

from jobwire.loadtest import results

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]

OBSERVE = """() => {
  window.paintedAt = {};
  new MutationObserver((mutations) => {
    for (const m of mutations) for (const node of m.addedNodes) {
      const job = node.dataset && node.dataset.job;
      if (job && !(job in window.paintedAt)) {
        window.paintedAt[job] = null;
        requestAnimationFrame(() => { window.paintedAt[job] = Date.now(); });
      }
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""


async def measure(updates: int, interval: float) -> dict[str, object]:
    server = start_server(log_level="warning")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS,
                                               headless=True)
            page = await browser.new_page()
            await page.goto(f"{server.url}/?token={server.token('viewer')}")
            await page.wait_for_function("document.body.dataset.state === 'open'",
                                         timeout=10_000)
            transport = await page.evaluate("document.body.dataset.transport")
            chromium = browser.version
            await page.evaluate(OBSERVE)
            sent: dict[str, float] = {}
            headers = server.headers("bench", "publisher")
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
                for i in range(updates):
                    job = f"pixel-{i}"
                    sent[job] = time.time() * 1000
                    r = await http.post(f"/api/v2/jobs/{job}/status", headers=headers,
                                        json={"userId": "viewer", "status": "processing",
                                              "progress": 50})
                    r.raise_for_status()
                    await asyncio.sleep(interval)
            await page.wait_for_function(
                f"Object.values(window.paintedAt).filter(v => v).length >= {updates}",
                timeout=10_000)
            painted = await page.evaluate("window.paintedAt")
            await browser.close()
    finally:
        server.stop()
    latencies = sorted(painted[job] - t for job, t in sent.items())
    return {"updates": updates, "transport": transport, "chromium": chromium,
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1),
            "max_ms": round(latencies[-1], 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between updates")
    parser.add_argument("--json", action="store_true")
    results.add_out_option(parser)
    args = parser.parse_args()
    run = results.Run("browser_latency", {"updates": args.updates, "interval": args.interval})
    result = asyncio.run(measure(args.updates, args.interval))
    run.save(result, args.out)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"publish to pixel over {result['updates']} updates ({result['transport']}): "
              f"p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms, max {result['max_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
