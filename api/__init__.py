"""The HTTP face of the ledger (arrives with the HTTP API issue)."""
