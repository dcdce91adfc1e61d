"""Unified audit log: Search-UnifiedAuditLog CSV, the Purview portal export, and AuditData
objects one per line (Management Activity API). AuditData is parsed; records are
de-duplicated on their Id within a file."""

from __future__ import annotations

import json

import polars as pl

from pipeline import normalize as nz
from pipeline.formats.common import (
    Context, Parsed, TabularFormat, any_of, col, parse_times, reject_rows,
)
from pipeline.formats.source import records_frame


def _parameters(value: str | None) -> str | None:
    """`[{"Name": "Identity", "Value": "x"}, ...]` → `{"Identity": "x", ...}`."""
    if not value:
        return None
    try:
        items = json.loads(value)
    except json.JSONDecodeError:
        return value
    if isinstance(items, list):
        return json.dumps({str(i.get("Name")): i.get("Value") for i in items
                           if isinstance(i, dict)}, ensure_ascii=False)
    return value


def parse_records(df: pl.DataFrame, ctx: Context, fmt: str = "audit_log_json") -> Parsed:
    # CreationDate (culture-formatted) is only a fallback for records without CreationTime
    complete = "creationtime" in df.columns and df["creationtime"].null_count() == 0
    times = parse_times(df, ctx, ["creationtime"] if complete else
                        ["creationtime", "creationdate"])
    null_ts = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    out = df.select(
        pl.col("_line"),
        nz.blank_to_null(col(df, "id", "recordid")).alias("record_id"),
        pl.coalesce(times.get("creationtime", null_ts), times.get("creationdate", null_ts))
        .alias("creation_utc"),
        col(df, "creationtime", "creationdate").alias("_raw_time"),
        nz.blank_to_null(col(df, "recordtype")).alias("record_type"),
        nz.blank_to_null(col(df, "workload")).alias("workload"),
        nz.blank_to_null(col(df, "operation", "operations")).alias("operation"),
        nz.blank_to_null(col(df, "userid", "userids")).alias("user_id"),
        nz.ip(col(df, "clientip", "clientipaddress")).alias("client_ip"),
        nz.blank_to_null(col(df, "objectid")).alias("object_id"),
        nz.blank_to_null(col(df, "resultstatus")).alias("result_status"),
        nz.domain_name(col(df, "organizationname")).alias("organization"),
        col(df, "parameters").map_elements(_parameters, return_dtype=pl.String)
        .alias("parameters"),
    )
    good, rejects = reject_rows(out, [
        (pl.col("creation_utc").is_null(), "unparseable or missing CreationTime",
         pl.col("_raw_time")),
        (pl.col("operation").is_null(), "missing Operation", pl.col("_raw_time")),
    ])
    good = good.unique("record_id", keep="first", maintain_order=True) if good.height else good
    own = tuple(sorted(o for o in good["organization"].drop_nulls().unique().to_list()))
    return Parsed(fmt, "audit_events", good.drop("_raw_time").rename({"_line": "source_line"}),
                  rejects, own)


def parse_csv(df: pl.DataFrame, ctx: Context) -> Parsed:
    """Cmdlet or Purview CSV: expand the AuditData JSON column, keep the outer columns as
    fallbacks (RecordId, CreationDate, Operation(s), UserId(s))."""
    records: list[tuple[int, dict]] = []
    bad: list[tuple[int, str, str]] = []
    outer = [c for c in ("recordid", "creationdate", "recordtype", "operation", "operations",
                         "userid", "userids") if c in df.columns]
    for row in df.select("_line", "auditdata", *outer).iter_rows(named=True):
        try:
            data = json.loads(row["auditdata"] or "")
        except json.JSONDecodeError as exc:
            bad.append((row["_line"], f"AuditData is not JSON ({exc.msg})",
                        (row["auditdata"] or "")[:1000]))
            continue
        if not isinstance(data, dict):
            bad.append((row["_line"], "AuditData is not a JSON object", str(data)[:1000]))
            continue
        for k in outer:
            if row[k] is not None:
                data.setdefault(k, row[k])
        records.append((row["_line"], data))
    parsed = parse_records(records_frame(records), ctx, "audit_log_csv")
    if bad:
        parsed.rejects = pl.concat([
            parsed.rejects,
            pl.DataFrame(bad, schema=parsed.rejects.schema, orient="row"),
        ])
    return parsed


FORMATS = [
    TabularFormat("audit_log_csv", "audit_events",
                  (any_of("auditdata"), any_of("creationdate"),
                   any_of("operation", "operations")), parse_csv),
    TabularFormat("audit_log_json", "audit_events",
                  (any_of("creationtime"), any_of("operation"),
                   any_of("workload", "recordtype"), any_of("userid", "userkey")),
                  parse_records),
]
