"""The crawl-like task both systems report: `steps` pages, one every `interval` seconds.

Before fetching page i it reports "fetching page i/steps", so each report stays current for a
whole interval (as a crawler's "now crawling …" line does) and a watcher polling more often
than that can see every one. Each report carries the wall-clock time it was made (`sent`), for
the watcher to measure the delay to its screen; the return value carries the time the task
finished, for the delay of the completion.

`reporter` picks the reporting code, the one line that differs between the two systems."""

from __future__ import annotations

import time

from celery import shared_task
from celery_progress.backend import ProgressRecorder

from jobwire.integrations import celery as jobwire_celery


def describe(step: int, steps: int) -> str:
    return f"fetching page {step}/{steps} sent {time.time():.6f}"


@shared_task(bind=True, name="crawler.crawl")
def crawl(self, steps: int, interval: float, reporter: str,
          user_id: str | None = None) -> dict[str, float]:
    recorder = ProgressRecorder(self) if reporter == "celery_progress" else None
    for step in range(1, steps + 1):
        time.sleep(interval)  # the previous page's fetch and parse (or, first, start-up)
        if recorder is not None:
            recorder.set_progress(step - 1, steps, description=describe(step, steps))
        else:
            jobwire_celery.report_progress(100 * (step - 1) / steps, describe(step, steps))
    time.sleep(interval)  # the last page
    return {"pages": steps, "finishedAt": time.time()}
