"""How delta-rs reaches the lake: its table URIs and object-store options, from the lake settings.

delta-rs (the `deltalake` package) reads Silver for Gold (dbt-duckdb's delta plugin, through conf.dbt_vars), for the
dashboard's live tail and for the jobs that read a Delta log without Spark; Spark's Hadoop connector says s3a://
for the same bucket and key (Settings.lake_uri).
"""
from __future__ import annotations

from conf.settings import Settings


def storage_options(settings: Settings) -> dict[str, str]:
    """delta-rs options for the lake's object store; credentials come from AWS_* in the environment."""
    lake = settings.lake
    return {
        "AWS_ENDPOINT_URL": lake.s3_endpoint,
        "AWS_REGION": lake.s3_region,
        "AWS_ALLOW_HTTP": str(lake.s3_endpoint.startswith("http://")).lower(),
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": str(not lake.path_style_access).lower(),
    }


def delta_rs_uri(settings: Settings, path: str) -> str:
    """The s3:// URI delta-rs reads a lake path at (Spark's Hadoop connector says s3a://: same bucket and key)."""
    return "s3://" + settings.lake_uri(path).removeprefix("s3a://")
