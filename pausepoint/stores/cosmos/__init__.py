"""The ``cosmos`` store kind: Azure Cosmos DB (NoSQL API) restored by point-in-time recovery."""
