"""The Dagster UI as a map: dagster-webserver on loopback, the asset graph and lineage read back
through its GraphQL endpoint, as the UI itself reads them."""

from __future__ import annotations

import json
from pathlib import Path

from pipelines.webserver import ASSET_GRAPH_QUERY, graphql, webserver

GROUPS = {"pricing", "ingestion", "costs", "reconciliation", "exports", "budgets", "selection", "operations"}


def test_webserver_serves_the_asset_graph_and_lineage(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (tmp_path / "cams.yaml").write_text(
        json.dumps(
            {"sources": {s: {"mode": "files", "drop_dir": str(tmp_path / s)} for s in ("relaycore", "auterity")}}
        )
    )
    env = {
        "DAGSTER_HOME": str(home),
        "CAMS_CONFIG": str(tmp_path / "cams.yaml"),
        "CAMS_DATABASE_URL": f"sqlite:///{tmp_path / 'w.db'}",
    }
    with webserver(env) as url:
        nodes = graphql(url, ASSET_GRAPH_QUERY)["assetNodes"]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    assert {"relaycore_usage", "cost_tracking", "cost_reconciliation", "model_selection_table"} <= set(by_key)
    lineage = {k: {"/".join(d["path"]) for d in n["dependencyKeys"]} for k, n in by_key.items()}
    assert lineage["cost_tracking"] == {"relaycore_usage", "price_book"}
    assert lineage["cost_reconciliation"] == {"relaycore_usage", "auterity_spans", "price_book"}
    assert lineage["budget_alerts"] == {"budget_status"}
    assert lineage["model_selection_table"] == {"model_quality_stats", "price_book"}
    downstream = {"/".join(d["path"]) for d in by_key["cost_tracking"]["dependedByKeys"]}
    assert {"cost_daily_rollups", "budget_status", "savings_report"} <= downstream
    landed = {"/".join(d["path"]) for d in by_key["relaycore_usage"]["dependedByKeys"]}
    assert landed == {"cost_tracking", "cost_reconciliation"}
    for key, n in by_key.items():
        assert n["groupName"] in GROUPS, key
        assert n["description"] and len(n["description"]) > 40, key
        assert n["kinds"] and n["owners"] and all(o.get("team") for o in n["owners"]), key
        assert n["jobNames"], key  # every asset belongs to a job the UI can launch
        if n["groupName"] == "operations":  # maintenance (retention) writes no table of its own
            continue
        schema = next(e for e in n["metadataEntries"] if e["label"] == "dagster/column_schema")["schema"]
        assert len(schema["columns"]) >= 3 and all(c["type"] for c in schema["columns"]), key
    assert by_key["cost_tracking"]["isPartitioned"] and not by_key["price_book"]["isPartitioned"]
    checks = {c["name"] for n in nodes for c in (n["assetChecksOrError"].get("checks") or [])}
    assert {"relaycore_valid", "auterity_valid", "cost_non_negative", "dollars_at_risk_share"} <= checks
    blocking = {c["name"] for n in nodes for c in (n["assetChecksOrError"].get("checks") or []) if c["blocking"]}
    assert "relaycore_valid" in blocking
