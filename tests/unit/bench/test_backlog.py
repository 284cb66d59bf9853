"""bench/backlog.py's cache key: made from the files that make the records, so it breaks when one moves."""
from __future__ import annotations

from bench import backlog


def test_the_cache_key_hashes_the_code_that_makes_the_records():
    key = backlog._code_hash()
    assert len(key) == 12 and int(key, 16) >= 0
    assert backlog.backlog_path(1000, 7).parent == backlog.cache_dir()
