# An analyst's export: a pseudonymised, signed snapshot of season 1446 (Parquet), downloaded and read in DuckDB
# (`pip install duckdb`). On the demo's store the counts are its simulated season's.
. "$(dirname "${BASH_SOURCE[0]}")/api.sh"

EXPORT=$(post "$ANALYST" /exports '{"format": "parquet", "season": 1446}' | jq -r .export_id)
until [ "$(get "$ANALYST" /exports/$EXPORT | jq -r .state)" = done ]; do sleep 1; done
for NAME in $(get "$ANALYST" /exports/$EXPORT | jq -r '.files[].name'); do
  mkdir -p "export/$(dirname "$NAME")" && get "$ANALYST" "/exports/$EXPORT/files/$NAME" > "export/$NAME"
done
python3 - <<'PYTHON'
import duckdb
print(duckdb.sql("SELECT stage, count(*) FROM 'export/journey_status.parquet' GROUP BY stage").fetchall())
PYTHON
# [('housed', 1)]
