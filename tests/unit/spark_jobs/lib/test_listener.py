"""The stream's progress lines: written by ProgressLogger, read back by read_progress."""
from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest

from spark_jobs.lib.listener import LOGGER_NAME, ProgressLogger, read_progress
from spark_jobs.lib.logs import LOG_FORMAT


@pytest.fixture
def job_log():
    """What the job writes to its log through the stocklake.stream logger, formatted as stream.py does."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    yield text
    logger.removeHandler(handler)
    logger.setLevel(previous_level)


def progress(name: str, batch_id: int, rows_in: int, dropped: int) -> SimpleNamespace:
    """The StreamingQueryProgress fields progress_record reads."""
    state = [SimpleNamespace(numRowsDroppedByWatermark=dropped, numRowsTotal=40)]
    return SimpleNamespace(name=name, batchId=batch_id, numInputRows=rows_in, inputRowsPerSecond=120.04,
                           processedRowsPerSecond=None, batchDuration=950,
                           eventTime={"watermark": "2026-01-05T14:20:00.000Z"}, stateOperators=state)


def test_read_progress_reads_back_what_the_listener_logged_and_skips_everything_else(job_log):
    listener = ProgressLogger()
    listener.onQueryStarted(SimpleNamespace(name="silver_quotes", id="q-1", runId="r-1"))
    job_log.write("26/01/05 14:30:01 WARN HDFSBackedStateStoreProvider: some Spark warning\n")
    listener.onQueryProgress(SimpleNamespace(progress=progress("silver_quotes", 0, 12, 0)))
    job_log.write("Traceback (most recent call last):\n")
    job_log.write('2026-01-05 14:30:02,000 INFO stocklake.stream {"event": "batch", "query": "silv\n')  # cut off
    job_log.write('2026-01-05 14:30:02,000 INFO stocklake.stream not json at all\n')
    job_log.write('2026-01-05 14:30:02,000 INFO other.logger {"event": "batch", "query": "x"}\n')
    listener.onQueryProgress(SimpleNamespace(progress=progress("silver_quotes", 1, 5, 2)))

    batch = {"event": "batch", "query": "silver_quotes", "input_rows_per_s": 120.0, "processed_rows_per_s": 0.0,
             "batch_duration_ms": 950, "watermark": "2026-01-05T14:20:00.000Z", "state_rows": 40}
    assert read_progress(job_log.getvalue()) == [
        {"event": "query_started", "query": "silver_quotes", "id": "q-1", "run_id": "r-1"},
        {**batch, "batch_id": 0, "rows_in": 12, "rows_dropped_by_watermark": 0},
        {**batch, "batch_id": 1, "rows_in": 5, "rows_dropped_by_watermark": 2},
    ]


def test_read_progress_of_an_empty_log_is_empty():
    assert read_progress("") == []
