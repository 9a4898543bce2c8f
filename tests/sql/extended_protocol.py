"""SQL over the PostgreSQL extended protocol, as drivers speak it: pg8000 prepares every
statement (Parse, Describe, Bind, Execute), parameters included. Run by tests/tests/sql_catalog.rs
with the node's address and a directory external tables may read; prints one JSON line."""

import json
import sys

import pg8000.native

host, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
con = pg8000.native.Connection("collabstream", host=host, port=port, timeout=60)
out = {}
# A parameter of each kind a driver binds: an integer, a text, a float.
out["by_a"] = con.run("SELECT b FROM semi WHERE a = :a", a=2)
out["by_b"] = con.run("SELECT a FROM semi WHERE b = :b ORDER BY a", b="two;2")
out["above"] = con.run("SELECT count(*) FROM semi WHERE a * 1.0 > :x", x=1.5)
# Definitions go through Parse and Describe too.
con.run(f"CREATE EXTERNAL TABLE semi_again (a BIGINT, b VARCHAR) STORED AS CSV LOCATION '{data}/semi.csv' "
        "OPTIONS ('format.delimiter' ';', 'format.has_header' 'true')")
out["again"] = con.run("SELECT count(*) FROM semi_again")
con.run("DROP TABLE semi_again")
try:
    con.run("SELECT count(*) FROM semi_again")
    out["dropped"] = "still there"
except pg8000.native.DatabaseError as e:
    out["dropped"] = e.args[0].get("C")
# A failed statement leaves the connection usable.
out["after_error"] = con.run("SELECT count(*) FROM semi")
con.close()
print(json.dumps(out))
