"""Real servers and test parts shared by tests/, demo/ and bench/ (not part of pausepoint):
private PostgreSQL/MariaDB, the test admin node, the bank load, a Prefect server, the Ledger."""
