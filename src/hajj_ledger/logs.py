"""How the long-running commands log (`serve`, `worker`, `project`, `publish`): one way, set up here.

Each record is a line on stderr with its time, level and logger; the HTTP face's own lines (the access log, its
errors) are written as they are made, one line each, since they carry their own fields.
"""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
AS_WRITTEN = ("hajj_ledger.access", "hajj_ledger.api")  # loggers whose messages are whole lines already
QUIET = ("alembic",)  # the migrations' steps at every start: warnings only


def configure_logging() -> None:
    """Once per process, as a command starts."""
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    for name in QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    as_written = logging.StreamHandler(sys.stderr)
    as_written.setFormatter(logging.Formatter("%(message)s"))
    for name in AS_WRITTEN:
        logger = logging.getLogger(name)
        logger.addHandler(as_written)
        logger.setLevel(logging.INFO)
        logger.propagate = False
