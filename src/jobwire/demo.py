"""The demo: a simulated crawler that runs jobs for two users, page by page, with the odd
failure, publishing straight to the in-process broker."""

from __future__ import annotations

import asyncio
import itertools
import random

from .publisher import BrokerPublisher
from .service import Service

USERS = ("alice", "bob")


async def crawl(publisher: BrokerPublisher, job_id: str, user_id: str, rng: random.Random,
                pages_per_second: float) -> None:
    pages = rng.randint(40, 200)
    site = rng.choice(["docs.example.org", "shop.example.com", "news.example.net"])
    await publisher.update(job_id, user_id, "queued", 0, f"Waiting to crawl {site}")
    await asyncio.sleep(rng.uniform(0.5, 2))
    fail_at = rng.randint(pages // 3, pages) if rng.random() < 0.15 else None
    errors = 0
    for page in range(1, pages + 1):
        await asyncio.sleep(1 / pages_per_second)
        if rng.random() < 0.03:
            errors += 1
        if page == fail_at:
            await publisher.update(job_id, user_id, "failed", round(100 * page / pages, 1),
                                   f"Stopped at page {page}/{pages}",
                                   error={"message": f"{site} answered 503 repeatedly"},
                                   workerId="crawler-1")
            return
        await publisher.update(job_id, user_id, "processing", round(100 * page / pages, 1),
                               f"Crawling {site}: page {page}/{pages}", workerId="crawler-1")
    await publisher.update(job_id, user_id, "completed", 100, f"Crawled {pages} pages",
                           result={"pages": pages, "errors": errors}, workerId="crawler-1")


async def run_crawler(service: Service, *, seed: int | None = None,
                      jobs_per_user: int = 2, pages_per_second: float = 8.0) -> None:
    """Keeps `jobs_per_user` crawls running for each demo user, forever."""
    publisher = BrokerPublisher(service.broker)
    rng = random.Random(seed)
    counter = itertools.count(1)
    running: set[asyncio.Task[None]] = set()
    try:
        while True:
            for user in USERS:
                mine = [t for t in running if t.get_name().endswith(user)]
                for _ in range(jobs_per_user - len(mine)):
                    job_id = f"crawl-{next(counter)}"
                    task = asyncio.create_task(
                        crawl(publisher, job_id, user, rng, pages_per_second),
                        name=f"{job_id}:{user}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                    await asyncio.sleep(rng.uniform(0.2, 1.0))
            await asyncio.sleep(1)
    finally:
        for task in running:
            task.cancel()
