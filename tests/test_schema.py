"""The data dictionary in docs/ matches the schema, and the lake's files match both."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipeline import detect, schema, sql
from pipeline.ingest import ingest
from pipeline.settings import Settings
from tests.conftest import AS_OF, DATA, ROOT


def test_data_dictionary_is_in_sync() -> None:
    doc = (ROOT / "docs" / "data-dictionary.md").read_text()
    assert doc == schema.markdown(), "run: relaywatch schema --markdown > docs/data-dictionary.md"


def test_lake_tables_have_the_documented_columns(tmp_path: Path) -> None:
    s = Settings(lake=tmp_path / "lake")
    ingest([DATA / "messagetrace_ps51.csv"], s, tenant="contoso")
    ingest([DATA / "messagetrace_detail.csv"], s, tenant="contoso")  # NDRs: ndr_rollup
    ingest([DATA / "inbound_connector_evotec.json"], s, tenant="contoso")
    ingest([DATA / "accepted_domain_evotec.json"], s, tenant="contoso")
    ingest([DATA / "outbound_connector_evotec.json"], s, tenant="contoso")
    from tests.conftest import real

    ingest([real("purview_auditlog_export_huntressctf.csv")], s, tenant="contoso")
    ingest([real("scubagear_providersettings_exo_export.json")], s, tenant="contoso")
    ingest([real("sendconnector_clixml_exchange_to_o365_cssexchange.xml"),
            DATA / "receive_connectors_ps7.json", DATA / "adpermission_receive_connector.csv",
            DATA / "MSGTRKMS2026112709-1.LOG"],
           s, tenant="contoso")
    detect.detect(s, AS_OF)
    for table in schema.TABLES.values():
        glob = str(tmp_path / "lake" / sql.table_glob(table))
        rel = duckdb.sql(f"SELECT * FROM read_parquet('{glob}', hive_partitioning=true) LIMIT 0")
        assert sorted(rel.columns) == sorted(c.name for c in table.columns), table.name
    # and the views analysts query have exactly the documented names and types, in order
    with sql.Session(s.lake) as session:
        views = set(session.frame("SELECT view_name FROM duckdb_views() WHERE NOT internal")
                    ["view_name"])
        assert views == set(schema.TABLES) | set(schema.VIEWS), "document every view"
        for table in (*schema.TABLES.values(), *schema.VIEWS.values()):
            described = session.frame(f'DESCRIBE "{table.name}"')
            assert list(zip(described["column_name"], described["column_type"], strict=False)) == [
                (c.name, sql.duck_type(c.dtype).replace("TIMESTAMPTZ", "TIMESTAMP WITH TIME ZONE"))
                for c in table.columns], table.name
