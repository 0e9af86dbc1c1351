import time

from celery import shared_task

from jobwire.integrations import celery as jobwire_celery


@shared_task(name="crawler.crawl")
def crawl(site: str, pages: int = 20, delay: float = 0.3) -> dict:
    """A stand-in crawl: `pages` pages, `delay` seconds each. No `user_id` argument: the
    job belongs to whoever started it from a view (CeleryOwnerMiddleware)."""
    base = site.rstrip("/")
    for page in range(1, pages + 1):
        time.sleep(delay)  # fetching and parsing the page
        jobwire_celery.report_progress(100 * page / pages, f"Crawled {page}/{pages}: "
                                                           f"{base}/page-{page}")
    return {"site": site, "pages": pages, "errors": 0}
