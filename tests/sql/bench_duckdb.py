"""Times SQL aggregates on a Collaborate-Stream node and on DuckDB over the same Parquet files,
in one process, one after the other, round by round (used by tests/benches/sql.rs).

  bench_duckdb.py URL OBJECTS_DIR COLD_UNTIL_MS HOT_FROM_MS ROUNDS

Cold: the node's `samples` before COLD_UNTIL_MS (its cold tier's files) against DuckDB reading
those files where the node wrote them. Hot: the node's `samples` from HOT_FROM_MS (its hot
store) against DuckDB over the same rows, fetched from the node as Arrow and written to one
Parquet file. Prints one JSON line per query with the medians in milliseconds.
"""

import json
import statistics
import sys
import time
import urllib.error
import urllib.request

import duckdb
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

URL, OBJECTS, COLD_UNTIL, HOT_FROM, ROUNDS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])


def ours(sql, arrow=False):
    req = urllib.request.Request(
        URL + "/api/v1/sql",
        data=json.dumps({"query": sql}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/vnd.apache.arrow.stream" if arrow else "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            body = r.read()
    except urllib.error.HTTPError as e:
        sys.exit(f"{sql}: HTTP {e.code}: {e.read().decode(errors='replace')}")
    return pa.ipc.open_stream(body).read_all() if arrow else json.loads(body)["rows"]


def ts(ms):
    return f"to_timestamp_millis({ms})"


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
cold_files = f"read_parquet('{OBJECTS}/samples/**/*.parquet')"
hot = ours(f"SELECT metric, labels, timestamp, value FROM samples WHERE timestamp >= {ts(HOT_FROM)}", arrow=True)
pq.write_table(hot, f"{OBJECTS}/../hot-export.parquet")
hot_file = f"read_parquet('{OBJECTS}/../hot-export.parquet')"

AGG = "count(*) AS n, sum(value) AS s, min(timestamp) AS lo, max(timestamp) AS hi"
FILTERED = "labels['instance'] AS instance, avg(value) AS a, count(*) AS n"
CASES = [
    ("cold, full-table aggregate",
     f"SELECT {AGG} FROM samples WHERE timestamp < {ts(COLD_UNTIL)}",
     f"SELECT {AGG} FROM {cold_files}"),
    ("cold, one metric over six hours, by instance",
     f"SELECT {FILTERED} FROM samples WHERE metric = 'cq_temperature' AND timestamp >= {ts(COLD_UNTIL - 6 * 3600000)} AND timestamp < {ts(COLD_UNTIL)} GROUP BY 1",
     f"SELECT {FILTERED} FROM {cold_files} WHERE metric = 'cq_temperature' AND timestamp >= to_timestamp({(COLD_UNTIL - 6 * 3600000) / 1000}) AND timestamp < to_timestamp({COLD_UNTIL / 1000}) GROUP BY 1"),
    ("hot, full-table aggregate",
     f"SELECT {AGG} FROM samples WHERE timestamp >= {ts(HOT_FROM)}",
     f"SELECT {AGG} FROM {hot_file}"),
    ("hot, one metric, by instance",
     f"SELECT {FILTERED} FROM samples WHERE metric = 'cq_temperature' AND timestamp >= {ts(HOT_FROM)} GROUP BY 1",
     f"SELECT {FILTERED} FROM {hot_file} WHERE metric = 'cq_temperature' GROUP BY 1"),
]

for name, mine, theirs in CASES:
    a, b = ours(mine), con.sql(theirs).fetchall()
    # The same rows: counts and sums agree (sums to 9 digits; group order aside).
    key = lambda r: str(r[0])
    na, nb = sorted(a, key=key), sorted(b, key=key)
    assert len(na) == len(nb), (name, len(na), len(nb))
    for x, y in zip(na, nb):
        assert int(x[-1] if "instance" in mine else x[0]) == int(y[-1] if "instance" in mine else y[0]), (name, x, y)
    t_ours, t_duck = [], []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        ours(mine)
        t_ours.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        con.sql(theirs).fetchall()
        t_duck.append((time.perf_counter() - t) * 1e3)
    mo, md = statistics.median(t_ours), statistics.median(t_duck)
    rows = int(a[0][0]) if "instance" not in mine else sum(int(r[-1]) for r in a)
    print(json.dumps({"query": name, "rows": rows, "ours_ms": round(mo, 1), "duckdb_ms": round(md, 1), "ratio": round(mo / md, 2)}), flush=True)
