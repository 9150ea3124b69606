"""Nexmark q0-q8 (without q6) in Flink SQL (PyFlink, local mini-cluster, streaming mode),
reading the events the Sluice bench generated from JSON files, each query into a
blackhole sink. Prints one line per query: `flink <query> <seconds>`.

Usage: python nexmark_flink.py DIR PARALLELISM QUERY...
"""

import sys
import time

from pyflink.table import EnvironmentSettings, Schema, TableDescriptor, TableEnvironment

work, parallelism, queries = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
# A query that has not finished after this long is reported as such (the streaming q4
# of a bounded input did not finish on this machine: see BENCHMARKS.md).
TIMEOUT_S = 300

TABLES = {
    "person": "id BIGINT, name STRING, emailAddress STRING, creditCard STRING, city STRING, "
    "state STRING, dateTime BIGINT, extra STRING",
    "auction": "id BIGINT, itemName STRING, description STRING, initialBid BIGINT, "
    "reserve BIGINT, dateTime BIGINT, expires BIGINT, seller BIGINT, category BIGINT, "
    "extra STRING",
    "bid": "auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, "
    "dateTime BIGINT, extra STRING",
}

HOP = "HOP(B1.ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND)"

# The Nexmark repository's queries (github.com/nexmark/nexmark), on event-time columns `ts`.
QUERIES = {
    "q0": "SELECT auction, bidder, price, dateTime, extra FROM bid",
    "q1": "SELECT auction, bidder, 0.908 * price AS price, dateTime, extra FROM bid",
    "q2": "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
    "q3": "SELECT P.name, P.city, P.state, A.id FROM auction AS A INNER JOIN person AS P "
    "ON A.seller = P.id WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' "
    "OR P.state = 'CA')",
    "q4": "SELECT Q.category, AVG(Q.final) AS avg_final FROM (SELECT MAX(B.price) AS final, "
    "A.category FROM auction A, bid B WHERE A.id = B.auction AND B.ts BETWEEN A.ts AND "
    "A.expires_ts GROUP BY A.id, A.category) Q GROUP BY Q.category",
    "q5": "SELECT AuctionBids.auction, AuctionBids.num FROM ("
    f"SELECT B1.auction, count(*) AS num, HOP_START(B1.ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS starttime, "
    f"HOP_END(B1.ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS endtime FROM bid B1 GROUP BY B1.auction, {HOP}"
    ") AS AuctionBids JOIN ("
    "SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime FROM ("
    f"SELECT count(*) AS num, HOP_START(B1.ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS starttime, "
    f"HOP_END(B1.ts, INTERVAL '2' SECOND, INTERVAL '10' SECOND) AS endtime FROM bid B1 GROUP BY B1.auction, {HOP}"
    ") AS CountBids GROUP BY CountBids.starttime, CountBids.endtime) AS MaxBids "
    "ON AuctionBids.starttime = MaxBids.starttime AND AuctionBids.endtime = MaxBids.endtime "
    "AND AuctionBids.num >= MaxBids.maxn",
    "q7": "SELECT B.auction, B.price, B.bidder, B.dateTime, B.extra FROM bid B JOIN ("
    "SELECT MAX(B1.price) AS maxprice, TUMBLE_ROWTIME(B1.ts, INTERVAL '10' SECOND) AS rt "
    "FROM bid B1 GROUP BY TUMBLE(B1.ts, INTERVAL '10' SECOND)) B1 ON B.price = B1.maxprice "
    "WHERE B.ts BETWEEN B1.rt - INTERVAL '10' SECOND AND B1.rt",
    "q8": "SELECT P.id, P.name, P.starttime FROM ("
    "SELECT P.id, P.name, TUMBLE_START(P.ts, INTERVAL '10' SECOND) AS starttime, "
    "TUMBLE_END(P.ts, INTERVAL '10' SECOND) AS endtime FROM person P "
    "GROUP BY P.id, P.name, TUMBLE(P.ts, INTERVAL '10' SECOND)) P JOIN ("
    "SELECT A.seller, TUMBLE_START(A.ts, INTERVAL '10' SECOND) AS starttime, "
    "TUMBLE_END(A.ts, INTERVAL '10' SECOND) AS endtime FROM auction A "
    "GROUP BY A.seller, TUMBLE(A.ts, INTERVAL '10' SECOND)) A "
    "ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime",
}


def environment():
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    conf.set("parallelism.default", str(parallelism))
    # Exactly-once checkpoints, as in the published Nexmark figures.
    conf.set("execution.checkpointing.interval", "10s")
    conf.set("execution.checkpointing.mode", "EXACTLY_ONCE")
    for table, columns in TABLES.items():
        extra = ", expires_ts AS TO_TIMESTAMP_LTZ(expires, 3)" if table == "auction" else ""
        env.execute_sql(
            f"CREATE TABLE {table} ({columns}, ts AS TO_TIMESTAMP_LTZ(dateTime, 3){extra}, "
            "WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH ("
            f"'connector' = 'filesystem', 'path' = '{work}/{table}.json', 'format' = 'json')"
        )
    return env


for q in queries:
    env = environment()
    table = env.sql_query(QUERIES[q])
    schema = Schema.new_builder().from_row_data_type(table.get_schema().to_row_data_type()).build()
    env.create_temporary_table("sink", TableDescriptor.for_connector("blackhole").schema(schema).build())
    started = time.time()
    result = table.execute_insert("sink")
    try:
        result.wait(TIMEOUT_S * 1000)
        print(f"flink {q} {time.time() - started:.3f}", flush=True)
    except Exception as e:  # the job did not finish in time (or failed): say so, go on
        print(f"flink {q} nan ({type(e).__name__}: did not finish in {TIMEOUT_S} s)", flush=True)
        try:
            result.get_job_client().cancel().result()
        except Exception:
            pass
