"""A small crawler as a Celery task, reported live to jobwire.

The two jobwire lines are `jobwire_celery.install(app)` and `report_progress(...)`; the owner
of each crawl is its `user_id` keyword argument. Settings come from the environment:
`CELERY_BROKER_URL` (default `redis://127.0.0.1:6379/0`) and `JOBWIRE_REDIS_URL` (the Redis
that the `jobwire serve` instances share; or `JOBWIRE_URL` + `JOBWIRE_TOKEN` to publish over
HTTP).

    celery -A tasks worker --pool=solo
    python -c 'import tasks; tasks.crawl.delay("http://127.0.0.1:8000/", user_id="alice")'
"""

from __future__ import annotations

import os
import time
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
from celery import Celery

from jobwire.integrations import celery as jobwire_celery

app = Celery("celery_crawler",
             broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)
jobwire_celery.install(app)  # every task of `app` is reported: queued → processing → end


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag == "a" and href:
            self.links.append(href)


@app.task(name="crawler.crawl")
def crawl(start_url: str, max_pages: int = 50, delay: float = 0.0,
          user_id: str | None = None) -> dict[str, int]:
    """Crawl the pages of `start_url`'s host reachable from it, breadth first, at most
    `max_pages`; `delay` seconds between pages (to watch it live)."""
    host = urlsplit(start_url).netloc
    queue, seen = [start_url], {start_url}
    done = errors = 0
    with httpx.Client(timeout=10, follow_redirects=True) as http:
        while queue and done < max_pages:
            url = queue.pop(0)
            try:
                page = http.get(url)
                page.raise_for_status()
            except httpx.HTTPError:
                errors += 1
            else:
                parser = _Links()
                parser.feed(page.text)
                for href in parser.links:
                    link = urldefrag(urljoin(url, href)).url
                    if urlsplit(link).netloc == host and link not in seen:
                        seen.add(link)
                        queue.append(link)
            done += 1
            total = min(max_pages, done + len(queue))
            jobwire_celery.report_progress(100 * done / total,
                                           f"Crawled {done}/{total}: {urlsplit(url).path}")
            time.sleep(delay)
    if errors > done // 2:
        raise RuntimeError(f"{errors} of {done} pages failed")
    return {"pages": done, "errors": errors}
