-- Re-reads the Delta log so new commits (stream batches, compaction, late-data merges) become visible.
ALTER EXTERNAL TABLE ${table} REFRESH
