"""The ``cassandra`` store kind: a snapshot of every node inside the pause window (store.py),
the resident JMX agent per node (agent.py, NodeAgent.java), the whole-cluster restore
(restore.py)."""

from pausepoint.stores.cassandra.store import CassandraStore

__all__ = ["CassandraStore"]
