"""Who gets what. Indexes sessions by job id, by user ("all my jobs") and admin-wide, and
routes each event to the sessions that may see it. Pure and synchronous: the hot path of
fan-out is plain set lookups and one `deliver` call per recipient, no awaits."""

from __future__ import annotations

from collections.abc import Iterable

from .events import Event
from .session import Session


class Hub:
    def __init__(self) -> None:
        self.by_job: dict[str, set[Session]] = {}
        self.by_user: dict[str, set[Session]] = {}
        self.everything: set[Session] = set()
        self.delivered = 0  # events handed to sessions, for metrics

    def subscribe_jobs(self, session: Session, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            session.job_ids.add(job_id)
            self.by_job.setdefault(job_id, set()).add(session)

    def subscribe_user(self, session: Session, user_id: str) -> None:
        session.all_of.add(user_id)
        self.by_user.setdefault(user_id, set()).add(session)

    def subscribe_everything(self, session: Session) -> None:
        session.watch_all = True
        self.everything.add(session)

    def unsubscribe_jobs(self, session: Session, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            session.job_ids.discard(job_id)
            _discard(self.by_job, job_id, session)

    def unsubscribe_all(self, session: Session) -> None:
        """Drop the session's "all" subscriptions (its job-id ones stay)."""
        for user_id in session.all_of:
            _discard(self.by_user, user_id, session)
        session.all_of.clear()
        session.watch_all = False
        self.everything.discard(session)

    def remove(self, session: Session) -> None:
        self.unsubscribe_all(session)
        self.unsubscribe_jobs(session, list(session.job_ids))

    def route(self, event: Event, admins: bool | None = None) -> int:
        """Deliver `event` to every session that subscribed to it and may see it (only to
        admins' sessions, or only to the others, when `admins` says so)."""
        by_job = self.by_job.get(event.job_id)
        by_user = self.by_user.get(event.user_id)
        everything = self.everything
        # Mostly one group holds every recipient: iterate it as it is, without a union.
        if by_job:
            recipients = by_job.union(by_user or (), everything) if by_user or everything \
                else by_job
        elif by_user:
            recipients = by_user | everything if everything else by_user
        elif everything:
            recipients = everything
        else:
            return 0
        owner = event.user_id
        count = 0
        for session in recipients:
            # Checked again at delivery: a job-id subscription may name a job that later
            # turned out to be someone else's.
            principal = session.principal
            if principal.may_see(owner) and (admins is None or principal.is_admin is admins):
                session.deliver(event)
                count += 1
        self.delivered += count
        return count

    def route_members(self, event: Event) -> int:
        return self.route(event, admins=False)

    def route_admins(self, event: Event) -> int:
        return self.route(event, admins=True)


def _discard(index: dict[str, set[Session]], key: str, session: Session) -> None:
    group = index.get(key)
    if group is not None:
        group.discard(session)
        if not group:
            del index[key]
