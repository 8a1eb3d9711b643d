"""Selection preferences per org and team: selection honours them on every path, names them when they
bind, and they are written in cams.yaml (synced like budgets) or through the API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from cams.api.app import create_app
from cams.config import ConfigError, PricingConfig, parse
from cams.pricing.quote import load_book
from cams.selection.preferences import PreferenceError, parse_preference, parse_preferences
from cams.selection.select import Decision, Request, SelectionError, SelectionTable
from cams.selection.store import load_preferences, preference_rows, put_preference, sync_yaml_preferences
from tests.conftest import PREFERENCES
from tests.test_api import table


@pytest.fixture(scope="module")
def sel() -> SelectionTable:
    return SelectionTable("v1", table(load_book(PricingConfig())), [], parse_preferences(PREFERENCES))


def test_exclusions_allowed_lists_and_a_preferred_provider_change_the_answer(sel: SelectionTable) -> None:
    plain = sel.select(Request("acme", "chat", "standard"))
    assert (plain.model, plain.preference) == ("gemini/gemini-2.5-flash", None)
    assert not plain.binding_constraint.startswith("preference:")
    # the org excludes gemini: the next qualifying model, and the exclusion is what bound
    org = sel.select(Request("hooli", "chat", "standard"))
    assert org.provider != "gemini" and org.binding_constraint == "preference:excluded_providers"
    assert org.alternatives[0]["rejected"] == "preference:excluded_providers"
    assert org.preference == {"scopes": ["org:hooli"], "excluded_providers": ["gemini"]}
    assert "gemini/gemini-2.5-flash" not in org.fallback_chain
    # a team without a preference of its own gets its org's
    assert sel.select(Request("hooli", "chat", "standard", team_id="other")).model == org.model
    # the team prefers anthropic on top of the org's exclusion: premium's cheapest is openai's gpt-4.1
    assert sel.select(Request("acme", "chat", "premium")).model == "gpt-4.1"
    pref = sel.select(Request("hooli", "chat", "premium", team_id="search"))
    assert (pref.model, pref.provider, pref.binding_constraint) == (
        "claude-sonnet-4-5",
        "anthropic",
        "preference:preferred_provider",
    )
    assert pref.preference is not None and pref.preference["scopes"] == ["org:hooli", "team:hooli/search"]
    assert pref.preference["excluded_providers"] == ["gemini"] and pref.preference["preferred_provider"] == "anthropic"
    # a preferred provider with no qualifying model leaves the cheapest: the request's constraints still rule
    fast = sel.select(Request("hooli", "chat", "premium", team_id="search", max_latency_ms=2600))
    assert fast.model == "gpt-4.1" and fast.binding_constraint != "preference:preferred_provider"
    # an allowed list that the tier's floor turns away entirely: 422, the preference named
    with pytest.raises(SelectionError) as closed:
        sel.select(Request("hooli", "chat", "standard", team_id="closed"))
    err = closed.value
    assert err.status == 422 and err.code == "no_candidate" and "preferences" in str(err)
    assert err.detail["binding_constraint"].startswith("preference:")
    assert err.detail["preference"]["allowed_models"] == ["gpt-4o-mini"]
    assert sel.select(Request("hooli", "chat", "economy", team_id="closed")).model == "gpt-4o-mini"


def test_preferences_are_validated_with_the_field_to_fix() -> None:
    bad = [
        ({"org_id": "a"}, "sets no rule"),
        ({"org_id": "a", "allowed_models": []}, "allow nothing"),
        ({"org_id": "a", "excluded_models": ["m"], "allowed_models": ["m"]}, "in both"),
        ({"org_id": "a", "excluded_providers": ["x"], "preferred_provider": "x"}, "does not allow"),
        ({"org_id": "a", "excluded_models": "m" * 300}, "at most 200"),
        ({"team_id": "t", "excluded_models": ["m"]}, "org_id is required"),
        ({"org_id": "a", "excluded_model": ["m"]}, "unknown key"),
    ]
    for raw, words in bad:
        with pytest.raises(PreferenceError, match=words):
            parse_preference(raw)
    with pytest.raises(PreferenceError, match="a second preference for org:a"):
        parse_preferences([{"org_id": "a", "excluded_models": ["m"]}, {"org_id": "a", "preferred_provider": "p"}])
    with pytest.raises(ConfigError, match=r"preferences\[0\].excluded_model: unknown key \(did you mean"):
        parse({"preferences": [{"org_id": "a", "excluded_model": ["m"]}]})
    cfg = parse({"preferences": PREFERENCES})
    assert [p.key for p in cfg.preferences] == ["org:hooli", "team:hooli/search", "team:hooli/closed"]


def test_cams_yaml_is_the_truth_for_its_preferences_and_the_api_for_its_own(engine) -> None:  # type: ignore[no-untyped-def]
    put_preference(engine, parse_preference({"org_id": "acme", "excluded_models": ["gpt-4.1"]}))
    yaml = parse_preferences(PREFERENCES[:2])
    assert sync_yaml_preferences(engine, yaml) == {"preferences": 2, "changed": 2, "removed": 0}
    assert sync_yaml_preferences(engine, yaml) == {"preferences": 2, "changed": 0, "removed": 0}
    assert {r["id"]: r["source"] for r in preference_rows(engine)} == {
        "org:acme": "api",
        "org:hooli": "yaml",
        "team:hooli/search": "yaml",
    }
    assert sync_yaml_preferences(engine, yaml[:1])["removed"] == 1  # gone from cams.yaml: gone
    assert sorted(p.key for p in load_preferences(engine)) == ["org:acme", "org:hooli"]


def test_preferences_api_writes_are_served_at_once(engine, published) -> None:  # type: ignore[no-untyped-def]
    from cams.api.keys import create_key

    sync_yaml_preferences(engine, parse_preferences([{"org_id": "yamlorg", "excluded_models": ["gpt-4.1"]}]))
    acme_writer = create_key(engine, ["read", "write"], org_id="acme")
    app = create_app(engine, refresh_s=60)

    def h(k: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {k}"}

    with TestClient(app) as http:
        app.state.service.refresh()
        ask = {"org_id": "acme", "task_type": "chat", "quality_tier": "standard"}
        before = http.post("/api/v1/models/select", json=ask, headers=h(acme_writer)).json()
        assert before["provider"] == "gemini"
        put = http.put("/api/v1/preferences/acme", json={"excluded_providers": ["gemini"]}, headers=h(acme_writer))
        assert put.status_code == 200, put.text
        assert put.json()["source"] == "api" and put.json()["scope"] == "org" and put.json()["id"] == "org:acme"
        after = http.post("/api/v1/models/select", json=ask, headers=h(acme_writer)).json()
        assert after["provider"] != "gemini"  # no refresh interval waited: the replica that took the write
        why = http.get(f"/api/v1/explainer/{after['explanation_id']}", headers=h(published["admin"])).json()
        assert why["explanation"]["binding_constraint"] == "preference:excluded_providers"
        assert why["explanation"]["preference"]["scopes"] == ["org:acme"]
        gen = http.post("/api/v1/explainer/generate", json=ask, headers=h(acme_writer)).json()
        assert gen["preference"]["excluded_providers"] == ["gemini"]
        team = http.put(
            "/api/v1/preferences/acme/teams/ml", json={"preferred_provider": "anthropic"}, headers=h(acme_writer)
        )
        assert team.status_code == 200 and team.json()["scope"] == "team"
        mine = http.get("/api/v1/preferences", headers=h(acme_writer)).json()
        assert [p["id"] for p in mine] == ["org:acme", "team:acme/ml"]  # an org-bound key: its org only
        everyone = {p["id"] for p in http.get("/api/v1/preferences", headers=h(published["admin"])).json()}
        assert {"org:hooli", "org:yamlorg", "team:acme/ml"} <= everyone
        assert http.get("/api/v1/preferences/acme/teams/ml", headers=h(acme_writer)).json()["preferred_provider"] == (
            "anthropic"
        )
        # the table document gateways load carries the preferences, and its ETag moves with them
        doc = http.get("/api/v1/models/table", headers=h(acme_writer))
        assert [p["org_id"] for p in doc.json()["preferences"]] == ["acme", "acme"]
        refusals = [
            (
                http.put("/api/v1/preferences/acme", json={"excluded_providers": ["x"]}, headers=h(published["acme"])),
                403,
            ),
            (http.put("/api/v1/preferences/globex", json={"excluded_models": ["m"]}, headers=h(acme_writer)), 403),
            (http.put("/api/v1/preferences/acme", json={"allowed_models": []}, headers=h(acme_writer)), 422),
            (http.put("/api/v1/preferences/acme", json={"colour": "red"}, headers=h(acme_writer)), 422),
            (
                http.put(
                    "/api/v1/preferences/acme",
                    json={"org_id": "globex", "excluded_models": ["m"]},
                    headers=h(acme_writer),
                ),
                422,
            ),
            (
                http.put("/api/v1/preferences/yamlorg", json={"excluded_models": ["m"]}, headers=h(published["admin"])),
                409,
            ),
            (http.delete("/api/v1/preferences/yamlorg", headers=h(published["admin"])), 409),
            (http.get("/api/v1/preferences/acme/teams/nope", headers=h(acme_writer)), 404),
        ]
        for got, status in refusals:
            assert got.status_code == status, got.text
            assert "\n" not in got.json()["error"]["message"]
        assert http.delete("/api/v1/preferences/acme", headers=h(acme_writer)).status_code == 204
        assert http.delete("/api/v1/preferences/acme", headers=h(acme_writer)).status_code == 404
        back = http.post("/api/v1/models/select", json={**ask, "team_id": "x"}, headers=h(acme_writer)).json()
        assert back["provider"] == "gemini"
        assert doc.headers["etag"] != http.get("/api/v1/models/table", headers=h(acme_writer)).headers["etag"]


def test_what_if_answers_with_the_same_rule_beside_today(sel: SelectionTable) -> None:
    from cams.selection.whatif import WhatIf, what_if

    req = Request("acme", "chat", "standard")
    today, same = what_if(sel, req, WhatIf())
    assert isinstance(today, Decision) and isinstance(same, Decision) and today.model == same.model
    # a lower floor lets the economy model in; a higher one leaves only the premium models
    _, lower = what_if(sel, req, WhatIf(quality_floor=0.70))
    assert (
        isinstance(lower, Decision)
        and lower.model == "gpt-4o-mini"
        and lower.estimated_cost_usd < today.estimated_cost_usd
    )
    _, higher = what_if(sel, req, WhatIf(quality_floor=0.86))
    assert isinstance(higher, Decision) and higher.model == "gpt-4.1"
    # a price cut re-sorts: claude-haiku-4-5 at a tenth of its price becomes the cheapest standard model
    _, cheaper = what_if(sel, req, WhatIf(price_factor={"claude-haiku-4-5": 0.1}))
    assert isinstance(cheaper, Decision) and cheaper.model == "claude-haiku-4-5"
    assert cheaper.estimated_cost_usd < today.estimated_cost_usd and cheaper.fallback_chain
    # a hypothetical preference for the scope, and the request's own constraints
    pref = parse_preference({"org_id": "acme", "excluded_providers": ["gemini"]})
    _, excluded = what_if(sel, req, WhatIf(preference=pref))
    assert isinstance(excluded, Decision) and excluded.provider != "gemini"
    assert excluded.binding_constraint == "preference:excluded_providers"
    _, tight = what_if(sel, req, WhatIf(max_latency_ms=1))
    assert isinstance(tight, SelectionError) and tight.status == 422
    # hooli's own preference is replaced by the hypothetical one, not added to
    hooli = Request("hooli", "chat", "standard")
    now, lifted = what_if(
        sel, hooli, WhatIf(preference=parse_preference({"org_id": "hooli", "excluded_models": ["x"]}))
    )
    assert isinstance(now, Decision) and now.provider != "gemini"
    assert isinstance(lifted, Decision) and lifted.provider == "gemini"
    assert sel.select(Request("acme", "chat", "standard")).model == today.model  # the served table untouched


def test_the_simulator_page_compares_a_change_with_today(engine, published) -> None:  # type: ignore[no-untyped-def]
    app = create_app(engine, refresh_s=60)
    with TestClient(app) as http:
        app.state.service.refresh()
        h = {"Authorization": f"Bearer {published['admin']}"}
        base = "/dashboard/simulator?org_id=acme&task_type=chat&quality_tier=standard"
        plain = http.get(base, headers=h)
        assert plain.status_code == 200 and "id='whatif'" in plain.text and "Fill in a field" in plain.text
        page = http.get(base + "&excluded_providers=gemini", headers=h).text
        assert "preference:excluded_providers" in page and "id='whatif-verdict'" in page and "costs" in page
        floor = http.get(base + "&quality_floor=0.7", headers=h).text
        assert "gpt-4o-mini" in floor and "saves" in floor
        bad = http.get(base + "&excluded_providers=gemini&preferred_provider=gemini", headers=h)
        assert bad.status_code == 200 and "does not allow" in bad.text  # said on the page, not a 500
        for bad, says in (
            ("&quality_floor=2", "the quality floor must be from 0 to 1"),
            ("&input_tokens=lots", "input tokens must be a number"),
        ):
            page = http.get(base + bad, headers=h)
            assert page.status_code == 200 and says in page.text  # said on the page, the form kept
        empty = http.get(base + "&team_id=&max_latency_ms=&input_tokens=&quality_floor=&price_factor=", headers=h)
        assert empty.status_code == 200 and "Fill in a field" in empty.text  # a form sent with empty fields
