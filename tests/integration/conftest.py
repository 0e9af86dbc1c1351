"""Fixtures shared by several integration test modules."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def site() -> Iterator[object]:
    """The Django example, started once: Django can be set up only once per process, and
    both Django test modules use it (tests/integration/django_site.py)."""
    from tests.integration.django_site import started_site

    with started_site() as started:
        yield started
