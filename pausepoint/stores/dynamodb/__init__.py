"""The ``dynamodb`` store kind (ScalarDB's tables on DynamoDB, restored by point-in-time
recovery): config.py (settings, capture details), tables.py (tables, windows, settings,
fingerprint), restore.py (the per-table procedures, journaled), store.py (DynamoStore)."""

from pausepoint.stores.dynamodb.config import (
    DynamoCaptureDetails,
    DynamoConfig,
    DynamoTableSettings,
)

__all__ = ["DynamoCaptureDetails", "DynamoConfig", "DynamoTableSettings"]
