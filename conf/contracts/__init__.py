"""The contracts: what an event is, for everything that writes, reads or tests one.

    conf/schemas/*.json   the JSON Schemas, one file per message family and version (the one source of truth)
    schemas.py            loading them: a version, every version, a reader's contract (versions may only add fields)
    events.py             trade and quote events: deterministic ids, encoding, decoding (with the stream parser's
                          limits), validation and its reason vocabulary (the producer's DLQ, the stream's quarantine)
    bars.py               daily bars: ids and events from Finnhub candles or file rows
    spark.py              the same contract in Spark: the typed schema and the validation rules, as Column expressions

Imported by the producer, the Spark jobs, the dashboard and the tests alike; it imports nothing above conf/.
"""
