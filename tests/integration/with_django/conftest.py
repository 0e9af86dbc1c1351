"""The Django tests' fixture: the example site, started once for this package's modules and
stopped when the last of them is done (its processes would otherwise idle beside every later
test, some of which measure latency)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="package")
def site() -> Iterator[object]:
    """The Django example, started once: Django can be set up only once per process, and
    both Django test modules use it (site.py)."""
    from tests.integration.with_django.site import started_site

    with started_site() as started:
        yield started
