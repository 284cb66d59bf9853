#!/usr/bin/env python3
"""Fetch the Compose specification's JSON Schema, pinned by sha256, into the cache; print its path.

    python3 scripts/fetch_compose_schema.py

tests/unit/docker/test_compose.py validates docker/compose.yaml against it. The schema is compose-spec's
schema/compose-spec.json (draft-07, with `models`, `provider`, `use_api_socket`, `develop`, ...), as shipped in the
npm package dclint 3.1.0 (package/schemas/compose.schema.json): the most current copy of it on a package registry
these machines reach (GitHub, the schema's home, is not). PyPI's docker-compose 1.29.2 ships a 2021 version.

Both the package tarball and the schema file are checked against pinned sha256 digests; a mismatch deletes the
download and fails. Cached in $STOCKLAKE_CACHE/compose-spec (default ~/.cache/stocklake), so later runs are
offline. Standard library only.
"""
from __future__ import annotations

import hashlib
import io
import os
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PACKAGE = "dclint"
VERSION = "3.1.0"
TARBALL_URL = f"https://registry.npmjs.org/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"
# Checksums, not secrets (detect-secrets flags any long hex string, hence the pragmas).
TARBALL_SHA256 = "73fc6079a0408c80c7ccea9e9e5c21c40551afaf15e8c1ee25a5ad6af1ec0414"  # pragma: allowlist secret
MEMBER = "package/schemas/compose.schema.json"
SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"  # pragma: allowlist secret


class SchemaFetchError(RuntimeError):
    pass


def cache_dir() -> Path:
    return Path(os.environ.get("STOCKLAKE_CACHE", Path.home() / ".cache" / "stocklake")).expanduser() / "compose-spec"


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str, attempts: int = 3) -> bytes:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise SchemaFetchError(f"not an http(s) URL: {url}")
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - scheme checked above
                return response.read()
        except (urllib.error.URLError, OSError) as exc:
            if attempt == attempts:
                raise SchemaFetchError(f"could not download {url}: {exc}") from None
            time.sleep(2 ** attempt)
    raise AssertionError("unreachable")


def extract_schema(tarball: bytes) -> bytes:
    if sha256_of(tarball) != TARBALL_SHA256:
        raise SchemaFetchError(f"checksum mismatch for {TARBALL_URL}: expected {TARBALL_SHA256}, "
                               f"got {sha256_of(tarball)}")
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        try:
            member = archive.extractfile(MEMBER)
        except KeyError:
            member = None
        if member is None:
            raise SchemaFetchError(f"{MEMBER} not found in {TARBALL_URL}")
        schema = member.read()
    if sha256_of(schema) != SCHEMA_SHA256:
        raise SchemaFetchError(f"checksum mismatch for {MEMBER} of {PACKAGE} {VERSION}: expected {SCHEMA_SHA256}, "
                               f"got {sha256_of(schema)}")
    return schema


def schema_path() -> Path:
    """The verified schema file in the cache, downloaded on first use."""
    dest = cache_dir() / f"compose-spec-{PACKAGE}-{VERSION}.json"
    if dest.is_file():
        if sha256_of(dest.read_bytes()) == SCHEMA_SHA256:
            return dest
        dest.unlink()  # corrupted or tampered with: fetch it again
    schema = extract_schema(download(TARBALL_URL))
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(schema)
    tmp.replace(dest)
    return dest


def main() -> int:
    try:
        print(schema_path())
    except SchemaFetchError as exc:
        print(f"fetch_compose_schema: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
