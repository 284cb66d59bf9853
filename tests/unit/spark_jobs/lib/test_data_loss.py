"""The data-loss check's pure parts: which partitions lost records, and the one line that says so."""
from __future__ import annotations

from spark_jobs.lib.data_loss import Gap, describe, gaps


def test_only_partitions_whose_next_offset_kafka_no_longer_holds_are_gaps():
    checkpointed = {0: 100, 1: 50, 2: 70, 5: 10}
    earliest = {0: 160, 1: 50, 2: 0, 3: 900}  # 1: nothing lost; 2: fine; 3: new to the checkpoint; 5: not in Kafka
    assert gaps("bronze_trades", "t", checkpointed, earliest) == [Gap("bronze_trades", "t", 0, 100, 160)]
    assert gaps("bronze_trades", "t", checkpointed, earliest)[0].records == 60


def test_the_line_names_each_query_topic_partition_range_and_count():
    found = [Gap("bronze_trades", "market.trades.v1", 0, 207, 334), Gap("bronze_trades", "market.trades.v1", 3, 0, 5),
             Gap("silver_trades", "market.trades.v1", 0, 207, 334)]
    assert describe(found) == (
        "bronze_trades has not read 132 records of market.trades.v1 that Kafka no longer holds "
        "(partition: offsets 0: 207..333, 3: 0..4); "
        "silver_trades has not read 127 records of market.trades.v1 that Kafka no longer holds "
        "(partition: offsets 0: 207..333)")
