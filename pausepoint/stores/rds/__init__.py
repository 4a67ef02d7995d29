"""The ``rds`` store kind (an RDS DB instance or an Aurora DB cluster, restored by RDS's
point-in-time recovery into a new one): config.py (settings, capture details), store.py
(RdsStore)."""

from pausepoint.stores.rds.config import RdsCaptureDetails, RdsConfig

__all__ = ["RdsCaptureDetails", "RdsConfig"]
