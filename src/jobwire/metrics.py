"""`/metrics` in Prometheus text format. Counters live as plain integers on the objects that
own them (no lock per delivered message); this collector reads them at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from .service import Service


class ServiceCollector(Collector):
    def __init__(self, service: Service):
        self.service = service

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily |
                                  HistogramMetricFamily]:
        svc = self.service
        conns = GaugeMetricFamily("jobwire_connections", "Open client sessions by transport",
                                  labels=["transport"])
        for transport, count in Counter(svc.sessions.values()).items():
            conns.add_metric([transport], count)
        yield conns
        yield GaugeMetricFamily("jobwire_subscribed_jobs", "Job ids with a subscriber",
                                value=len(svc.hub.by_job))
        yield CounterMetricFamily("jobwire_events_published", "Job events accepted",
                                  value=getattr(svc.broker, "published", 0))
        yield CounterMetricFamily(
            "jobwire_broker_events_received", "Events this instance received from Redis "
            "pub/sub (on Redis Cluster: its users' only, and everyone's while serving an admin)",
            value=getattr(svc.broker, "received", 0))
        yield CounterMetricFamily("jobwire_events_delivered", "Events handed to sessions",
                                  value=svc.hub.delivered)
        yield CounterMetricFamily("jobwire_events_shed", "Intermediate progress dropped for "
                                  "clients that fell behind", value=svc.shed_total)
        yield CounterMetricFamily("jobwire_slow_disconnects", "Clients cut off for not keeping "
                                  "up (close 4000)", value=svc.slow_disconnects)
        latency = HistogramMetricFamily("jobwire_delivery_latency_seconds",
                                        "From an event's acceptance to its write to a client")
        latency.add_metric([], svc.latency.cumulative(), svc.latency.sum)
        yield latency
        yield GaugeMetricFamily("jobwire_subscriptions", "Subscriptions of open sessions",
                                value=sum(s.subscription_count for s in svc.sessions))
        yield CounterMetricFamily("jobwire_rate_limited", "Requests, connections and messages "
                                  "refused by a rate or concurrency limit",
                                  value=svc.limits.hits)
        yield GaugeMetricFamily("jobwire_broker_ready", "1 while the broker is reachable",
                                value=1 if svc.broker.ready() else 0)


def render(service: Service) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service))
    return generate_latest(registry)
