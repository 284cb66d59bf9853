-- One stage on the lake bucket; every external table points at a path below it.
CREATE STAGE IF NOT EXISTS ${stage}
  URL = ${url}
  STORAGE_INTEGRATION = ${integration}
