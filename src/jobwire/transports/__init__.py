"""Transports: thin adapters that move a session's messages over one kind of connection."""
