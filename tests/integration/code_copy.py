"""The pipeline's contract changed, to run a job as a user would run an older or an edited checkout: a copy of
conf/schemas with an edit applied, which in-process jobs read instead of this checkout's
(conf.contracts.schemas.SCHEMAS_DIR; pipeline.yaml stays this checkout's). Only the schemas differ."""
from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.integration.stack import REPO


def contract_copy(dest: Path, edit: Callable[[Path], None]) -> Path:
    """Copy conf/schemas to dest/schemas, apply edit(dest / 'schemas'), return dest."""
    shutil.copytree(REPO / "conf" / "schemas", dest / "schemas")
    edit(dest / "schemas")
    return dest


@contextmanager
def contract_of(copy: Path) -> Iterator[None]:
    """Jobs run inside the block read the copy's schemas."""
    import conf.contracts.schemas

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(conf.contracts.schemas, "SCHEMAS_DIR", copy / "schemas")
        yield


def edit_schema(schemas: Path, name: str, change: Callable[[dict[str, Any]], None]) -> None:
    path = schemas / f"{name}.json"
    schema = json.loads(path.read_text())
    change(schema)
    path.write_text(json.dumps(schema, indent=2))
