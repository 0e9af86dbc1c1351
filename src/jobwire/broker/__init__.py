"""Brokers store job state and history and fan events out. `memory` is the default."""

from .base import Broker, Scope, View

__all__ = ["Broker", "Scope", "View"]
