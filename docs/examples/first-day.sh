#!/usr/bin/env bash
# A season's first day, every example in order in one shell (each uses what those before it made), against
# `make run`'s server with its keys in MISSION, COMPANY, AMANAH, ... (or API=... and keys of another).
set -euo pipefail
EXAMPLES=$(dirname "$0")
for EXAMPLE in market pilgrim bus feed proof export; do
  . "$EXAMPLES/$EXAMPLE.sh"
done
