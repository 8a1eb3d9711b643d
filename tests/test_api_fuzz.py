"""Schemathesis fuzzes every operation of /openapi.json on each backend: no input may produce a 500, and
every response matches the schema the OpenAPI document gives it."""

from __future__ import annotations

import hypothesis
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import not_a_server_error, response_schema_conformance

from cams.api.app import create_app
from cams.api.keys import create_key
from cams.config import PricingConfig
from cams.pricing import store as pricebook_store
from cams.pricing.quote import load_book
from cams.selection.store import publish
from tests.test_api import table


def test_no_input_gives_a_500(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CAMS_WEBHOOK_SECRET", "fuzz-secret")
    book = load_book(PricingConfig())
    pricebook_store.store(engine, book)
    publish(engine, table(book))
    headers = {"Authorization": f"Bearer {create_key(engine, ['admin'])}"}
    app = create_app(engine, refresh_s=60, flush_s=0.2)
    failures: list[str] = []
    operations = 0
    with TestClient(app):  # runs the lifespan: the table is loaded
        app.state.service.refresh()
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1

            @hypothesis.given(case=operation.as_strategy())
            @hypothesis.settings(
                max_examples=25,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(hypothesis.HealthCheck),
            )
            def fuzz(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(headers=headers)
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )
                    return
                if response.status_code >= 400:
                    assert set(response.json()["error"]) >= {"code", "message"}
                try:
                    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
                except AssertionError as exc:  # schemathesis' failures are AssertionErrors
                    failures.append(f"{case.method} {case.formatted_path}: {str(exc).splitlines()[0][:200]}")

            fuzz()
    assert operations >= 20
    assert not failures, failures[:5]
