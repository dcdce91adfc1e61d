"""On-premises Exchange configuration: Get-ReceiveConnector, Get-SendConnector and
Get-ADPermission on receive connectors, from JSON, CSV (multi-valued properties joined
with ';') or CLIXML. They say which server and setting let mail in (issue 18's open-relay
findings); on-premises Get-AcceptedDomain reads as the accepted_domains format."""

from __future__ import annotations

import polars as pl

from pipeline import normalize as nz
from pipeline.formats.common import Context, Parsed, TabularFormat, any_of, as_bool, col
from pipeline.formats.common import check_type_names
from pipeline.formats.config import _finish, as_list, created_changed, sender_domain_list


def _server_and_name(df: pl.DataFrame) -> list[pl.Expr]:
    """`Identity` is `SERVER\\Name` on premises; Name and Server may also stand alone."""
    identity = nz.blank_to_null(col(df, "identity"))
    name = nz.blank_to_null(col(df, "name"))
    server = nz.blank_to_null(col(df, "server"))
    return [
        pl.coalesce(name, identity.str.extract(r"\\([^\\]+)$", 1), identity).alias("name"),
        pl.coalesce(server, identity.str.extract(r"^([^\\]+)\\", 1)).alias("server"),
        identity.alias("identity"),
    ]


# [Flags] enums ConvertTo-Json writes as numbers when it holds the live object, not a
# remote session's strings: bit values as Exchange defines them
PERMISSION_GROUPS = ("AnonymousUsers", "ExchangeUsers", "ExchangeServers",
                     "ExchangeLegacyServers", "Partners", "Custom")
AUTH_MECHANISMS = ("Tls", "Integrated", "BasicAuth", "BasicAuthRequireTLS", "ExchangeServer",
                   "ExternalAuthoritative")


def _flags(e: pl.Expr, names: tuple[str, ...]) -> pl.Expr:
    """A flags value as the list of its names, from `A, B` text or from its number."""
    number = e.cast(pl.String).str.strip_chars().cast(pl.Int64, strict=False)
    bits = pl.concat_list([pl.when((number // (2 ** i)) % 2 == 1).then(pl.lit(n))
                           for i, n in enumerate(names)]).list.drop_nulls()
    return pl.when(number.is_not_null()).then(bits).otherwise(as_list(e))


def parse_receive(df: pl.DataFrame, ctx: Context) -> Parsed:
    check_type_names(df, ctx)
    created, changed = created_changed(df, ctx)
    out = df.select(
        pl.col("_line"), *_server_and_name(df),
        as_bool(col(df, "enabled")).alias("enabled"),
        nz.blank_to_null(col(df, "transportrole")).alias("transport_role"),
        as_list(col(df, "bindings")).alias("bindings"),
        as_list(col(df, "remoteipranges")).alias("remote_ip_ranges"),
        _flags(col(df, "permissiongroups"), PERMISSION_GROUPS).alias("permission_groups"),
        _flags(col(df, "authmechanism"), AUTH_MECHANISMS).alias("auth_mechanism"),
        nz.blank_to_null(col(df, "fqdn")).alias("fqdn"),
        created.alias("when_created_utc"), changed.alias("when_changed_utc"),
    )
    return _finish(out, ctx, "receive_connectors", "receive_connectors", "name")


def parse_send(df: pl.DataFrame, ctx: Context) -> Parsed:
    check_type_names(df, ctx)
    created, changed = created_changed(df, ctx)
    out = df.select(
        pl.col("_line"), _server_and_name(df)[0],
        nz.blank_to_null(col(df, "identity")).alias("identity"),
        as_bool(col(df, "enabled")).alias("enabled"),
        sender_domain_list(col(df, "addressspaces")).alias("address_spaces"),
        as_list(col(df, "smarthosts")).alias("smart_hosts"),
        as_list(col(df, "sourcetransportservers")).alias("source_transport_servers"),
        as_bool(col(df, "requiretls")).alias("require_tls"),
        nz.blank_to_null(col(df, "tlscertificatename")).alias("tls_certificate_name"),
        as_bool(col(df, "cloudservicesmailenabled")).alias("cloud_services_mail_enabled"),
        created.alias("when_created_utc"), changed.alias("when_changed_utc"),
    )
    return _finish(out, ctx, "send_connectors", "send_connectors", "name")


def parse_permissions(df: pl.DataFrame, ctx: Context) -> Parsed:
    check_type_names(df, ctx)
    out = df.select(
        pl.col("_line"),
        nz.blank_to_null(col(df, "identity")).alias("identity"),
        nz.blank_to_null(col(df, "user")).alias("user"),
        as_list(col(df, "extendedrights")).alias("extended_rights"),
        as_list(col(df, "accessrights")).alias("access_rights"),
        as_bool(col(df, "deny")).fill_null(False).alias("deny"),
        as_bool(col(df, "isinherited")).fill_null(False).alias("is_inherited"),
    )
    return _finish(out, ctx, "ad_permissions", "ad_permissions", "user")


FORMATS = [
    TabularFormat("receive_connectors", "receive_connectors",
                  (any_of("bindings"), any_of("remoteipranges", "permissiongroups",
                                              "authmechanism")), parse_receive),
    TabularFormat("send_connectors", "send_connectors",
                  (any_of("name", "identity"), any_of("addressspaces", "sourcetransportservers")),
                  parse_send),
    TabularFormat("ad_permissions", "ad_permissions",
                  (any_of("user"), any_of("extendedrights", "accessrights"),
                   any_of("isinherited", "deny")), parse_permissions),
]
