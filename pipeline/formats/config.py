"""Tenant configuration snapshots: Get-AcceptedDomain, Get-InboundConnector,
Get-OutboundConnector, from JSON (ConvertTo-Json) or CSV (Export-Csv with -join)."""

from __future__ import annotations

import polars as pl

from pipeline import normalize as nz
from pipeline.formats.common import (
    Context, Parsed, TabularFormat, any_of, as_bool, check_type_names, col, parse_times,
    reject_rows,
)


def as_list(e: pl.Expr) -> pl.Expr:
    """`{a, b}` (Format-List), `a;b` (-join ';'), `a, b` → list of non-empty strings."""
    s = e.cast(pl.String).str.strip_chars(" {}[]").str.replace_all(r"[;,\s]+", ";")
    return s.str.split(";").list.eval(pl.element().filter(pl.element().str.len_chars() > 0))


def sender_domain_list(e: pl.Expr) -> pl.Expr:
    """`smtp:*;1;smtp:contoso.com;1` → ['*', 'contoso.com'] (address type and cost dropped)."""
    return as_list(e).list.eval(
        nz.per_series(pl.element().str.replace(r"(?i)^smtp:", "").str.to_lowercase(),
                      nz.a_labels).filter(~pl.element().str.contains(r"^\d+$"))
    )


def created_changed(df: pl.DataFrame, ctx: Context) -> tuple[pl.Expr, pl.Expr]:
    t = parse_times(df, ctx, ["whencreatedutc", "whenchangedutc", "whencreated", "whenchanged"])
    null = pl.lit(None, dtype=pl.Datetime("us", "UTC"))
    created = pl.coalesce(t.get("whencreatedutc", null), t.get("whencreated", null))
    changed = pl.coalesce(t.get("whenchangedutc", null), t.get("whenchanged", null))
    return created, changed


def _finish(out: pl.DataFrame, ctx: Context, fmt: str, table: str,
            key: str, own: tuple[str, ...] = ()) -> Parsed:
    out = out.with_columns(pl.lit(ctx.snapshot_utc).cast(pl.Datetime("us", "UTC"))
                           .alias("snapshot_utc"))
    good, rejects = reject_rows(out, [(pl.col(key).is_null(), f"missing {key}", pl.col(key))])
    return Parsed(fmt, table, good.rename({"_line": "source_line"}), rejects, own)


def own_domain_patterns(domains: pl.DataFrame) -> set[str]:
    """Accepted domains as `normalize.direction` patterns: `d`, or `*.d` for d and subdomains."""
    pairs = domains.select("domain_name", "match_subdomains").drop_nulls("domain_name")
    # `*` or `*.com` (an on-premises relay domain) covers the internet: no own domain
    return {("*." if sub else "") + d for d, sub in pairs.iter_rows() if "." in d}


def parse_accepted(df: pl.DataFrame, ctx: Context) -> Parsed:
    check_type_names(df, ctx)
    created, changed = created_changed(df, ctx)
    raw = col(df, "domainname", "domain")
    wildcard = raw.str.strip_chars().str.starts_with("*.").fill_null(False)
    domain_type = col(df, "domaintype")
    out = df.select(
        pl.col("_line"),
        nz.domain_name(raw).alias("domain_name"),
        domain_type.alias("domain_type"),
        as_bool(col(df, "default")).alias("is_default"),
        (as_bool(col(df, "matchsubdomains")).fill_null(False) | wildcard)
        .alias("match_subdomains"),
        (as_bool(col(df, "initialdomain")).fill_null(False)
         | nz.domain_name(raw).str.ends_with(".onmicrosoft.com").fill_null(False))
        .alias("is_initial"),
        created.alias("when_created_utc"), changed.alias("when_changed_utc"),
    )
    own = tuple(sorted(own_domain_patterns(out)))
    return _finish(out, ctx, "accepted_domains", "accepted_domains", "domain_name", own)


def _connector_columns(df: pl.DataFrame) -> list[pl.Expr]:
    """Columns inbound and outbound connectors share."""
    return [
        nz.blank_to_null(col(df, "name", "identity")).alias("name"),
        as_bool(col(df, "enabled")).alias("enabled"),
        nz.blank_to_null(col(df, "connectortype")).alias("connector_type"),
        nz.blank_to_null(col(df, "connectorsource")).alias("connector_source"),
    ]


def parse_inbound(df: pl.DataFrame, ctx: Context) -> Parsed:
    check_type_names(df, ctx)
    created, changed = created_changed(df, ctx)
    out = df.select(
        pl.col("_line"),
        *_connector_columns(df),
        as_list(col(df, "senderipaddresses")).alias("sender_ip_addresses"),
        sender_domain_list(col(df, "senderdomains")).alias("sender_domains"),
        nz.blank_to_null(col(df, "tlssendercertificatename"))
        .alias("tls_sender_certificate_name"),
        as_bool(col(df, "requiretls")).alias("require_tls"),
        as_bool(col(df, "restrictdomainstoipaddresses"))
        .alias("restrict_domains_to_ip_addresses"),
        as_bool(col(df, "restrictdomainstocertificate"))
        .alias("restrict_domains_to_certificate"),
        as_bool(col(df, "cloudservicesmailenabled")).alias("cloud_services_mail_enabled"),
        as_bool(col(df, "treatmessagesasinternal")).alias("treat_messages_as_internal"),
        nz.blank_to_null(col(df, "comment")).alias("comment"),
        created.alias("when_created_utc"), changed.alias("when_changed_utc"),
    )
    return _finish(out, ctx, "inbound_connectors", "inbound_connectors", "name")


def parse_outbound(df: pl.DataFrame, ctx: Context) -> Parsed:
    check_type_names(df, ctx)
    created, changed = created_changed(df, ctx)
    out = df.select(
        pl.col("_line"),
        *_connector_columns(df),
        as_list(col(df, "recipientdomains")).list.eval(pl.element().str.to_lowercase())
        .alias("recipient_domains"),
        as_list(col(df, "smarthosts")).alias("smart_hosts"),
        nz.blank_to_null(col(df, "tlssettings")).alias("tls_settings"),
        as_bool(col(df, "usemxrecord")).alias("use_mx_record"),
        as_bool(col(df, "routeallmessagesviaonpremises"))
        .alias("route_all_messages_via_on_premises"),
        as_bool(col(df, "allaccepteddomains")).alias("all_accepted_domains"),
        nz.blank_to_null(col(df, "comment")).alias("comment"),
        created.alias("when_created_utc"), changed.alias("when_changed_utc"),
    )
    return _finish(out, ctx, "outbound_connectors", "outbound_connectors", "name")


FORMATS = [
    TabularFormat("accepted_domains", "accepted_domains",
                  (any_of("domainname"), any_of("domaintype")), parse_accepted),
    TabularFormat("inbound_connectors", "inbound_connectors",
                  (any_of("name", "identity"),
                   any_of("senderdomains", "senderipaddresses", "restrictdomainstoipaddresses",
                          "tlssendercertificatename")),
                  parse_inbound, forbidden=frozenset({"recipientdomains", "smarthosts"})),
    TabularFormat("outbound_connectors", "outbound_connectors",
                  (any_of("name", "identity"),
                   any_of("recipientdomains", "smarthosts", "usemxrecord", "tlssettings")),
                  parse_outbound,
                  forbidden=frozenset({"addressspaces", "sourcetransportservers"})),
]
