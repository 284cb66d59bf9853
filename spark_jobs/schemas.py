"""Spark's view of the message contract, derived from the JSON Schemas in conf/schemas (never restated here).

Two things come out of a JSON Schema:
- struct_type(): the StructType of the typed event;
- violations(): one Column per rule, each null when the rule holds and the reason string when it is broken.
  The reasons are the producer's (producer/events.py): `malformed_json`, `<field>:required`, `<field>:type`,
  `<field>:<keyword>` (pattern, minimum, maximum, exclusiveMinimum, exclusiveMaximum, minLength, maxLength,
  maxItems, enum) and `additionalProperties`.

JSON types are judged on the JSON itself (parsed as a Spark VARIANT), not after Spark's lenient JSON-to-column
coercion, so {"price": "12"} is `price:type` here exactly as at the producer.
"""
from __future__ import annotations

from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, BooleanType, DataType, DoubleType, LongType, StringType, StructField,
                               StructType)

# JSON Schema type -> Spark type of the typed column.
SPARK_TYPES: dict[str, DataType] = {
    "string": StringType(), "number": DoubleType(), "integer": LongType(), "boolean": BooleanType(),
}
# JSON Schema type -> regex over schema_of_variant() of the field's value.
VARIANT_TYPE_PATTERNS = {
    "string": r"^STRING$",
    "integer": r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,0\))$",
    "number": r"^(TINYINT|SMALLINT|INT|BIGINT|DECIMAL\(\d+,\d+\)|FLOAT|DOUBLE)$",
    "boolean": r"^BOOLEAN$",
    "array": r"^ARRAY<",
    "object": r"^OBJECT<",
    "null": r"^VOID$",
}
COMPARISONS = {"minimum": "<", "maximum": ">", "exclusiveMinimum": "<=", "exclusiveMaximum": ">="}


def _types(spec: dict[str, Any]) -> list[str]:
    declared = spec.get("type", [])
    return [declared] if isinstance(declared, str) else list(declared)


def spark_type(spec: dict[str, Any]) -> DataType:
    non_null = [t for t in _types(spec) if t != "null"]
    if len(non_null) != 1:
        raise ValueError(f"cannot map JSON Schema type {spec.get('type')!r} to one Spark type")
    if non_null[0] == "array":
        return ArrayType(spark_type(spec.get("items", {"type": "string"})), containsNull=False)
    return SPARK_TYPES[non_null[0]]


def struct_type(schema: dict[str, Any]) -> StructType:
    required = set(schema.get("required", []))
    return StructType([
        StructField(name, spark_type(spec), nullable=name not in required or "null" in _types(spec))
        for name, spec in schema["properties"].items()
    ])


def ecma_pattern(pattern: str) -> str:
    """A JSON Schema (ECMA-262) pattern as a Java regex: an unescaped trailing `$` means end of input there,
    but in Java it also matches before a final newline, which would let "AAPL\\n" through."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        return pattern[:-1] + "\\z"
    return pattern


def field_type(variant: Column, name: str) -> Column:
    """The JSON type of top-level field `name` as schema_of_variant reports it (null when absent)."""
    return F.schema_of_variant(F.variant_get(variant, f"$['{name}']", "variant"))


def type_matches(variant_type: Column, spec: dict[str, Any]) -> Column:
    checks = [variant_type.rlike(VARIANT_TYPE_PATTERNS[t]) for t in _types(spec)]
    matched = checks[0]
    for check in checks[1:]:
        matched = matched | check
    if "array" in _types(spec) and "items" in spec:
        # Element type: every item must be of the items' type; an empty array reports ARRAY<VOID>.
        item_pattern = VARIANT_TYPE_PATTERNS[_types(spec["items"])[0]].strip("^$")
        elements_ok = variant_type.rlike(rf"^ARRAY<({item_pattern}|VOID)>$")
        matched = matched & elements_ok
    return matched


def _constraint_violations(name: str, spec: dict[str, Any], value: Column) -> list[Column]:
    """Rules of one field checked on its typed value (which is null when absent, null or ill-typed)."""
    rules: list[tuple[str, Column]] = []
    for keyword, op in COMPARISONS.items():
        if keyword in spec:
            limit = F.lit(spec[keyword])
            broken = {"<": value < limit, ">": value > limit, "<=": value <= limit, ">=": value >= limit}[op]
            rules.append((keyword, broken))
    if "pattern" in spec:
        rules.append(("pattern", ~value.rlike(ecma_pattern(spec["pattern"]))))
    if "minLength" in spec:
        rules.append(("minLength", F.length(value) < spec["minLength"]))
    if "maxLength" in spec:
        rules.append(("maxLength", F.length(value) > spec["maxLength"]))
    if "enum" in spec:
        rules.append(("enum", ~value.isin(*spec["enum"])))
    if "maxItems" in spec:
        rules.append(("maxItems", F.size(value) > spec["maxItems"]))
    items = spec.get("items", {})
    if "maxLength" in items:
        rules.append(("maxLength", F.exists(value, lambda item: F.length(item) > items["maxLength"])))
    if "pattern" in items:
        rules.append(("pattern", F.exists(value, lambda item: ~item.rlike(ecma_pattern(items["pattern"])))))
    return [F.when(broken, F.lit(f"{name}:{keyword}")) for keyword, broken in rules]


# Helper columns of the parse stages (dropped again by parse_json): the record parsed once, its keys, and the
# JSON type of each top-level field.
JSON_COLUMN = "_json"
JSON_KEYS_COLUMN = "_json_keys"
JSON_TYPE_PREFIX = "_json_type_"
TYPED_PREFIX = "_typed_"


def parse_json(df: DataFrame, raw_column: str, schema: dict[str, Any], event_column: str = "event",
               violations_column: str = "_violations") -> DataFrame:
    """Parse the raw Kafka bytes in `raw_column` against a JSON Schema: adds `event_column`, a struct of the typed
    fields (a field is null where it is absent or ill-typed), and `violations_column`, the array of rule results
    in contract order (null where a rule holds; the first non-null one is the record's quarantine reason).

    Built in stacked projections on purpose: the parsed JSON and each field's JSON type are read by many rules, and
    Spark re-evaluates an expression at every use when it is inlined into conditional branches (one projection
    held the JSON parse about forty times and ran ~150x slower). As columns of their own, each is computed once:
    Spark never collapses a projection into one that uses an expensive expression more than once.
    """
    properties: dict[str, dict[str, Any]] = schema["properties"]
    raw = F.col(raw_column)
    text = F.when(F.is_valid_utf8(raw), raw.cast("string"))
    staged = df.withColumns({JSON_COLUMN: F.try_parse_json(text),
                             JSON_KEYS_COLUMN: F.json_object_keys(text)})  # null unless the text is an object
    staged = staged.withColumns({f"{JSON_TYPE_PREFIX}{name}": field_type(F.col(JSON_COLUMN), name)
                                 for name in properties})
    type_ok = {name: type_matches(F.col(f"{JSON_TYPE_PREFIX}{name}"), spec) for name, spec in properties.items()}
    staged = staged.withColumns({
        f"{TYPED_PREFIX}{name}": F.when(type_ok[name], F.try_variant_get(F.col(JSON_COLUMN), f"$['{name}']",
                                                                         spark_type(spec).simpleString()))
        for name, spec in properties.items()})
    typed = {name: F.col(f"{TYPED_PREFIX}{name}") for name in properties}
    event = F.struct(*[typed[name].alias(name) for name in properties])
    violations = _violations(schema, F.col(JSON_COLUMN), F.col(JSON_KEYS_COLUMN), type_ok, typed)
    helpers = [JSON_COLUMN, JSON_KEYS_COLUMN, *[f"{prefix}{name}" for prefix in (JSON_TYPE_PREFIX, TYPED_PREFIX)
                                                 for name in properties]]
    return (staged.withColumns({event_column: event, violations_column: F.array(*violations)})
            .drop(*helpers))


def _violations(schema: dict[str, Any], variant: Column, keys: Column, type_ok: dict[str, Column],
                typed: dict[str, Column]) -> list[Column]:
    """One column per rule of the contract, in contract order: null where it holds, else the reason."""
    properties: dict[str, dict[str, Any]] = schema["properties"]

    violations = [F.when(variant.isNull() | keys.isNull(), F.lit("malformed_json"))]
    for name in schema.get("required", []):
        violations.append(F.when(~F.array_contains(keys, name), F.lit(f"{name}:required")))
    for name, spec in properties.items():
        present = F.array_contains(keys, name)
        violations.append(F.when(present & ~type_ok[name], F.lit(f"{name}:type")))
        violations.extend(_constraint_violations(name, spec, typed[name]))
    if schema.get("additionalProperties") is False:
        unknown = F.array_except(keys, F.array(*[F.lit(name) for name in properties]))
        violations.append(F.when(F.size(unknown) > 0, F.lit("additionalProperties")))
    return violations
