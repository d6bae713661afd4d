"""Cluster mode: several daemons on one PostgreSQL state share the work under leases.

``leases.py`` holds the leases this instance wants (each sink, the Tencent pulls) and keeps them
renewed; ``instances.py`` names the instance and keeps its heartbeat. ``docs/cluster.md`` is the
operator's view.
"""
