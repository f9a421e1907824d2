"""Where the events live: the recorders (SQLite here, PostgreSQL in `postgres`), their codec and connections."""
