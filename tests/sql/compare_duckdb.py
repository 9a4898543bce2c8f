"""Runs SQL statements on a Collaborate-Stream node and on DuckDB over the same data, and
compares the rows. Used by tests/tests/sql.rs, which writes the data to the node and the same
data as JSON lines beside it.

DuckDB reads the JSON lines the test wrote (the data as the test generated it, not as the node
stored it), writes them to Parquet, and answers over the Parquet files; `meeting_metrics` (the
node's own aggregation, which DuckDB cannot compute from the same definition) is taken from the
node as an Arrow stream and also put in Parquet. Each statement has one text for both engines
unless the dialects differ, then one each.

  compare_duckdb.py URL DATA_DIR START_MS END_MS

Exits 0 when every statement gives the same rows, else prints each difference and exits 1.
"""

import datetime
import decimal
import json
import math
import sys
import urllib.request

import duckdb
import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq

URL, DATA, START, END = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
MID = (START + END) // 2
HOUR = 3_600_000


def ours(sql):
    req = urllib.request.Request(
        URL + "/api/v1/sql",
        data=json.dumps({"query": sql}).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/vnd.apache.arrow.stream"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return pa.ipc.open_stream(r.read()).read_all()
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"HTTP {e.code}: {e.read().decode()}") from None


def ts(ms):
    """A time literal both engines read."""
    t = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)
    return "TIMESTAMP '" + t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "'"


con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(
    f"""COPY (SELECT metric, labels, CAST(epoch_ms(timestamp) AS TIMESTAMPTZ) AS timestamp, value
        FROM read_json('{DATA}/samples.jsonl', format = 'newline_delimited',
             columns = {{metric: 'VARCHAR', labels: 'MAP(VARCHAR, VARCHAR)', timestamp: 'BIGINT', value: 'DOUBLE'}}))
        TO '{DATA}/samples.parquet' (FORMAT parquet)"""
)
con.execute(
    f"""COPY (SELECT CAST(epoch_ms(timestamp) AS TIMESTAMPTZ) AS timestamp, type, tenant, meeting_id, user_id,
               action, message_id, CAST(length AS UINTEGER) AS length, kind, latency_ms, jitter_ms, packet_loss_pct
        FROM read_json('{DATA}/events.jsonl', format = 'newline_delimited',
             columns = {{timestamp: 'BIGINT', type: 'VARCHAR', tenant: 'VARCHAR', meeting_id: 'VARCHAR',
                        user_id: 'VARCHAR', action: 'VARCHAR', message_id: 'VARCHAR', length: 'BIGINT',
                        kind: 'VARCHAR', latency_ms: 'DOUBLE', jitter_ms: 'DOUBLE', packet_loss_pct: 'DOUBLE'}}))
        TO '{DATA}/events.parquet' (FORMAT parquet)"""
)
pq.write_table(ours("SELECT * FROM meeting_metrics"), f"{DATA}/meeting_metrics.parquet")
for t in ["samples", "events", "meeting_metrics"]:
    con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{DATA}/{t}.parquet')")

# History to join with: the origin project's users by cohort (CSV), and meetings by team
# (Parquet), as external tables on the node (committed through Raft) and views in DuckDB.
with open(f"{DATA}/historical_users.csv", "w") as f:
    f.write("user_id,cohort,signup_year\n")
    for i in range(5):
        f.write(f"u{i},{'early' if i < 2 else 'late'},{2019 + i}\n")
pq.write_table(
    pa.table({"meeting_id": ["m1", "m2", "m3"], "team": ["sales", "eng", "eng"], "budget": [10.5, 20.0, 7.25]}),
    f"{DATA}/meetings_history.parquet",
)
ours(f"CREATE EXTERNAL TABLE historical_users STORED AS CSV LOCATION '{DATA}/historical_users.csv' "
     "OPTIONS ('format.has_header' 'true')")
ours(f"CREATE EXTERNAL TABLE meetings_history STORED AS PARQUET LOCATION '{DATA}/meetings_history.parquet'")
con.execute(f"CREATE VIEW historical_users AS SELECT * FROM read_csv('{DATA}/historical_users.csv', header = true)")
con.execute(f"CREATE VIEW meetings_history AS SELECT * FROM read_parquet('{DATA}/meetings_history.parquet')")

# (name, statement, DuckDB's statement if it differs, whether the order is the statement's)
S, E, M, H = ts(START), ts(END), ts(MID), HOUR
# The test's own series: `samples` also holds the meetings pack's output series, which
# DuckDB's copy of the test's data does not.
SQ = "metric IN ('sq_requests_total', 'sq_temperature')"
STATEMENTS = [
    ("count all samples", f"SELECT count(*) AS n FROM samples WHERE {SQ}", None, True),
    ("samples per metric", f"SELECT metric, count(*) AS n, sum(value) AS s FROM samples WHERE {SQ} GROUP BY metric ORDER BY metric", None, True),
    ("cold half only", f"SELECT count(*) AS n, min(value) AS lo, max(value) AS hi FROM samples WHERE timestamp < {M} AND {SQ}", None, True),
    ("hot half only", f"SELECT count(*) AS n, avg(value) AS a FROM samples WHERE timestamp >= {M} AND {SQ}", None, True),
    ("range across tiers", f"SELECT metric, count(*) AS n FROM samples WHERE timestamp BETWEEN {ts(MID - H)} AND {ts(MID + H)} AND {SQ} GROUP BY metric ORDER BY metric", None, True),
    ("one metric", "SELECT avg(value) AS a, count(*) AS n FROM samples WHERE metric = 'sq_temperature'", None, True),
    ("metric in list", "SELECT metric, max(value) AS m FROM samples WHERE metric IN ('sq_requests_total', 'sq_temperature') GROUP BY metric ORDER BY metric", None, True),
    ("label by map key", f"SELECT labels['instance'] AS instance, count(*) AS n FROM samples WHERE {SQ} GROUP BY 1 ORDER BY 1", None, True),
    ("label function", "SELECT label(labels, 'instance') AS instance, sum(value) AS s FROM samples WHERE metric = 'sq_requests_total' GROUP BY 1 ORDER BY 1",
     "SELECT labels['instance'] AS instance, sum(value) AS s FROM samples WHERE metric = 'sq_requests_total' GROUP BY 1 ORDER BY 1", True),
    ("ten-minute buckets", f"SELECT date_bin(INTERVAL '10 minutes', timestamp, TIMESTAMP '2000-01-01 00:00:00') AS bucket, avg(value) AS a FROM samples WHERE metric = 'sq_temperature' GROUP BY 1 ORDER BY 1",
     "SELECT time_bucket(INTERVAL '10 minutes', timestamp, TIMESTAMPTZ '2000-01-01 00:00:00') AS bucket, avg(value) AS a FROM samples WHERE metric = 'sq_temperature' GROUP BY 1 ORDER BY 1", True),
    ("hourly buckets across tiers", f"SELECT date_trunc('hour', timestamp) AS h, metric, count(*) AS n FROM samples WHERE {SQ} GROUP BY 1, 2 ORDER BY 1, 2", None, True),
    ("window: running sum", f"SELECT timestamp, value, sum(value) OVER (ORDER BY timestamp ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run FROM samples WHERE metric = 'sq_requests_total' AND labels['instance'] = 'i3' ORDER BY timestamp", None, True),
    ("window: lag delta", "SELECT timestamp, value - lag(value) OVER (PARTITION BY labels['instance'] ORDER BY timestamp) AS d FROM samples WHERE metric = 'sq_temperature' AND labels['instance'] IN ('i0', 'i1') ORDER BY labels['instance'], timestamp", None, True),
    ("window: rank", f"SELECT instance, s, rank() OVER (ORDER BY s DESC) AS r FROM (SELECT labels['instance'] AS instance, sum(value) AS s FROM samples WHERE {SQ} GROUP BY 1) ORDER BY r, instance", None, True),
    ("window: row_number top per instance", "SELECT instance, value FROM (SELECT labels['instance'] AS instance, value, row_number() OVER (PARTITION BY labels['instance'] ORDER BY value DESC, timestamp) AS rn FROM samples WHERE metric = 'sq_temperature') WHERE rn = 1 ORDER BY instance", None, True),
    ("having", "SELECT labels['instance'] AS instance, avg(value) AS a FROM samples WHERE metric = 'sq_requests_total' GROUP BY 1 HAVING avg(value) > (SELECT avg(value) FROM samples WHERE metric = 'sq_requests_total') ORDER BY 1", None, True),
    ("self join of two metrics", "SELECT r.labels['instance'] AS instance, count(*) AS n, sum(r.value * t.value) AS p FROM samples r JOIN samples t ON r.labels['instance'] = t.labels['instance'] AND r.timestamp = t.timestamp WHERE r.metric = 'sq_requests_total' AND t.metric = 'sq_temperature' GROUP BY 1 ORDER BY 1", None, True),
    ("limit", "SELECT timestamp, value FROM samples WHERE metric = 'sq_requests_total' ORDER BY timestamp DESC, value DESC LIMIT 7", None, True),
    ("distinct", "SELECT DISTINCT metric FROM samples WHERE metric LIKE 'sq%' ORDER BY 1", None, True),
    ("count distinct", f"SELECT count(DISTINCT labels['instance']) AS n FROM samples WHERE {SQ}", None, True),
    ("case", f"SELECT CASE WHEN value > 200 THEN 'high' ELSE 'low' END AS level, count(*) AS n FROM samples WHERE {SQ} GROUP BY 1 ORDER BY 1", None, True),
    ("events per type", "SELECT type, count(*) AS n FROM events GROUP BY type ORDER BY type", None, True),
    ("events per meeting across tiers", f"SELECT meeting_id, count(*) AS n FROM events WHERE timestamp >= {ts(MID - H)} GROUP BY 1 ORDER BY 1", None, True),
    ("one meeting one hour", f"SELECT count(*) AS n, count(DISTINCT user_id) AS u FROM events WHERE meeting_id = 'm2' AND timestamp >= {ts(START + H)} AND timestamp < {ts(START + 2 * H)}", None, True),
    ("chat lengths", "SELECT meeting_id, sum(length) AS l, avg(length) AS a FROM events WHERE type = 'chat' GROUP BY 1 ORDER BY 1", None, True),
    ("quality reports", "SELECT meeting_id, avg(latency_ms) AS lat, max(packet_loss_pct) AS loss FROM events WHERE kind = 'quality' GROUP BY 1 ORDER BY 1", None, True),
    ("user actions", "SELECT action, count(*) AS n FROM events WHERE type = 'user' GROUP BY 1 ORDER BY 1", None, True),
    ("chatters per meeting per 30 min", "SELECT meeting_id, date_trunc('hour', timestamp) AS h, count(DISTINCT user_id) AS u FROM events WHERE type = 'chat' GROUP BY 1, 2 ORDER BY 1, 2", None, True),
    ("events joined with samples", "SELECT e.meeting_id, count(*) AS n FROM events e JOIN samples s ON s.timestamp = e.timestamp WHERE s.metric = 'sq_temperature' AND s.labels['instance'] = 'i0' GROUP BY 1 ORDER BY 1", None, True),
    ("subquery in", "SELECT count(*) AS n FROM events WHERE user_id IN (SELECT user_id FROM events WHERE type = 'user' AND action = 'join')", None, True),
    ("cte", "WITH per AS (SELECT meeting_id, count(*) AS n FROM events GROUP BY 1) SELECT max(n) AS most, min(n) AS least FROM per", None, True),
    ("union all", f"SELECT 'samples' AS t, count(*) AS n FROM samples WHERE {SQ} UNION ALL SELECT 'events', count(*) FROM events ORDER BY t", None, True),
    ("meeting_metrics per meeting", "SELECT meeting_id, avg(active_users) AS u, avg(engagement_score) AS e, count(*) AS n FROM meeting_metrics GROUP BY 1 ORDER BY 1", None, True),
    ("meeting_metrics health", "SELECT meeting_health, count(*) AS n FROM meeting_metrics WHERE meeting_health IS NOT NULL GROUP BY 1 ORDER BY 1", None, True),
    ("origin query shape", "SELECT meeting_id, AVG(avg_latency_ms) AS avg_latency, AVG(engagement_score) AS avg_engagement, meeting_health FROM meeting_metrics GROUP BY meeting_id, meeting_health ORDER BY avg_engagement DESC NULLS LAST, meeting_id, meeting_health", None, True),
    ("external CSV", "SELECT cohort, count(*) AS n, min(signup_year) AS first FROM historical_users GROUP BY 1 ORDER BY 1", None, True),
    ("external Parquet", "SELECT team, sum(budget) AS b FROM meetings_history GROUP BY 1 ORDER BY 1", None, True),
    ("engagement by user cohort", "SELECT h.cohort, count(DISTINCT e.meeting_id) AS meetings, count(*) AS messages FROM events e JOIN historical_users h ON e.user_id = h.user_id WHERE e.type = 'chat' GROUP BY 1 ORDER BY 1", None, True),
    ("live metrics joined with Parquet history", "SELECT h.team, avg(m.engagement_score) AS e, count(*) AS n FROM meeting_metrics m JOIN meetings_history h ON m.meeting_id = h.meeting_id GROUP BY 1 ORDER BY 1", None, True),
    ("cold samples joined with history", f"SELECT h.team, count(*) AS n FROM events e JOIN meetings_history h USING (meeting_id) WHERE e.timestamp < {M} GROUP BY 1 ORDER BY 1", None, True),
    ("meeting_metrics joined with events", "SELECT m.meeting_id, count(*) AS n FROM meeting_metrics m JOIN (SELECT DISTINCT meeting_id FROM events) e ON m.meeting_id = e.meeting_id GROUP BY 1 ORDER BY 1", None, True),
]


def norm(v):
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return ("t", round(v.timestamp() * 1000))
    if isinstance(v, decimal.Decimal):
        v = float(v)
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        f = float(v)
        if math.isnan(f):
            return ("n", "nan")
        return ("n", float(f"{f:.9g}"))
    return ("s", v)


def rows(table):
    cols = table.to_pydict()
    names = list(cols)
    return [tuple(norm(cols[n][i]) for n in names) for i in range(table.num_rows)]


failed = 0
for name, sql, duck_sql, ordered in STATEMENTS:
    try:
        a = rows(ours(sql))
    except Exception as e:  # noqa: BLE001 - reported with the statement
        print(f"FAIL {name}: ours: {e}\n  {sql}")
        failed += 1
        continue
    b = rows(con.sql(duck_sql or sql).to_arrow_table())
    if not ordered:
        a, b = sorted(a), sorted(b)
    if a != b:
        failed += 1
        print(f"FAIL {name}: {len(a)} rows here, {len(b)} in DuckDB\n  {sql}")
        for x, y in list(zip(a, b))[:5]:
            if x != y:
                print(f"    ours {x}\n    duck {y}")
    elif not a:
        failed += 1
        print(f"FAIL {name}: no rows in either (the statement tests nothing)\n  {sql}")
    else:
        print(f"ok   {name}: {len(a)} rows")
print(f"{len(STATEMENTS) - failed} of {len(STATEMENTS)} statements agree")
sys.exit(1 if failed else 0)
