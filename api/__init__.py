"""The HTTP face of the ledger: agencies record steps and read their own views over `/v1` (FastAPI)."""
