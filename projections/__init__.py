"""The read side: one projection per agency view (arrives with the read-models issue)."""
