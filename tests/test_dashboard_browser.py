"""The dashboard in a real browser: Debian's chromium, driven by Playwright, against a real
``llmledger serve`` process over a demo ledger (SQLite and PostgreSQL).

Every page is visited and its main action performed; a reader key of one tenant
sees none of another tenant's calls on any page or data route.  The SQLite run
writes a screenshot of every page to docs/screenshots/ (shown in the README).
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from llmledger.core.ids import new_id
from tests.alerting_support import wait_for, webhook_server
from tests.test_server_e2e import cli, free_port, serve

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).parent.parent / "docs" / "screenshots"
TENANTS = ("acme", "globex", "initech")
FEATURES = ("support-chat", "summarise", "search", "draft-email", "research")
MODELS = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4.1"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-haiku-4-5"),
)


def _history(now: datetime, count: int) -> list[dict[str, Any]]:
    """A month of varied calls, so the charts have days to show (sent through the API)."""
    rng = random.Random(14)
    events = []
    for i in range(count):
        provider, model = MODELS[i % len(MODELS)]
        tenant = TENANTS[i % 3]
        ts = now - timedelta(days=rng.uniform(0.05, 29.5))
        events.append(
            {
                "id": new_id(),
                "ts": ts.isoformat(),
                "provider": provider,
                "model": model,
                "status": "error" if i % 23 == 5 else "ok",
                "usage": {
                    "input_tokens": rng.randint(300, 9000),
                    "output_tokens": rng.randint(50, 1500),
                },
                "duration_ms": rng.randint(300, 4000),
                "tenant": tenant,
                "user": f"{tenant}-user{i % 4}",
                "feature": FEATURES[i % len(FEATURES)],
                "tags": {"podcast_id": f"rec{i % 6}"},
            }
        )
    for i in range(3):  # a model no price knows yet
        events.append(
            {
                **events[i],
                "id": new_id(),
                "model": "acme-large",
                "provider": "openai",
                "ts": (now - timedelta(days=2 + i)).isoformat(),
            }
        )
    return events


def _signin(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/")
    expect(page).to_have_url(f"{url}/signin?next=%2F")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{url}/")


def _chart_drawn(page: Page) -> None:
    expect(page.locator("#chart[data-rendered=true] svg.main-svg").first).to_be_visible()


def _shot(page: Page, name: str, enabled: bool) -> None:
    if enabled:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def test_the_dashboard_in_a_browser(db_url: str, db_backend: str, browser: Browser) -> None:
    shots = db_backend == "sqlite"
    cli(db_url, "demo", "--calls", "20", "--db", db_url)
    admin = json.loads(cli(db_url, "keys", "create", "--role", "admin", "--json"))["secret"]
    reader = json.loads(
        cli(db_url, "keys", "create", "--role", "reader", "--tenant", "acme", "--json")
    )["secret"]
    now = datetime.now(UTC)
    history = _history(now, 360)
    with (
        webhook_server() as (hook_url, hook),
        serve(db_url, free_port()) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=60) as api,
    ):
        assert api.post("/v1/events", json={"events": history}).status_code == 200
        globex = [e for e in history if e["tenant"] == "globex"]

        context = browser.new_context(
            viewport={"width": 1366, "height": 1000}, accept_downloads=True
        )
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

        # Sign in; the overview draws its trend chart.
        _signin(page, url, admin)
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        _chart_drawn(page)
        expect(page.get_by_role("heading", name="Month-end forecast")).to_be_visible()
        _shot(page, "overview", shots)

        # Calls: filter by feature and status, then open a call.
        page.get_by_role("link", name="Calls", exact=True).click()
        page.get_by_label("feature", exact=True).fill("search")
        page.get_by_label("Last").select_option("30d")
        page.get_by_role("button", name="Filter").click()
        assert "feature=search" in page.url and "last=30d" in page.url
        rows = page.locator("#calls tbody tr")
        expect(rows.first).to_be_visible()
        badges = page.locator("#calls tbody .badge.feature").all_inner_texts()
        assert badges and set(badges) == {"search"}
        _shot(page, "calls", shots)

        # New calls appear while the page is open.
        fresh = {**history[0], "id": new_id(), "ts": datetime.now(UTC).isoformat()}
        fresh.update(feature="search", tenant="acme", tags={"podcast_id": "live"})
        assert api.post("/v1/events", json=fresh).status_code == 200
        expect(page.locator(f'#calls tbody tr[data-id="{fresh["id"]}"]')).to_be_visible(
            timeout=15_000
        )

        # Export the filtered calls as CSV.
        with page.expect_download() as download_info:
            page.get_by_role("link", name="Export CSV").click()
        exported = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
        assert exported and {row["feature"] for row in exported} == {"search"}
        assert fresh["id"] in {row["id"] for row in exported}

        page.locator("#calls tbody tr a").first.click()
        expect(page.get_by_role("heading", name="Usage")).to_be_visible()
        expect(page.get_by_text("price used")).to_be_visible()
        _shot(page, "call", shots)

        # A captured call shows the provider's raw usage.
        page.goto(f"{url}/calls?tenant=&q=environment%3Ddemo")
        page.locator("#calls tbody tr a").first.click()
        expect(page.get_by_role("heading", name="Raw provider usage")).to_be_visible()

        # Breakdowns: the state is in the URL; the chart and table follow it.
        page.get_by_role("link", name="Breakdowns").click()
        page.get_by_label("model", exact=True).check()
        page.get_by_label("Time bucket").select_option("day")
        page.get_by_role("button", name="Show").click()
        assert "by=model" in page.url and "every=day" in page.url
        _chart_drawn(page)
        expect(page.locator("#breakdown tbody tr").first).to_be_visible()
        _shot(page, "breakdowns", shots)
        shared = page.url
        page.goto(f"{url}/")
        page.goto(shared)
        _chart_drawn(page)

        # Entity: what one podcast cost, stage by stage.
        page.get_by_role("link", name="Entity").click()
        page.get_by_label("Tag").fill("podcast_id=rec1")
        page.get_by_role("button", name="Show").click()
        expect(page.get_by_role("heading", name="Cost by stage (feature)")).to_be_visible()
        _chart_drawn(page)
        _shot(page, "entity", shots)

        # Budgets and alerts: create a budget, send a test, see it cross and acknowledge it.
        other = {"name": "globex-cap", "amount": "1", "tenant": "globex"}
        assert api.post("/v1/budgets", json=other).status_code == 201
        page.get_by_role("link", name="Budgets and alerts").click()
        create = page.locator("#create-budget")
        create.get_by_label("Name").fill("acme-search")
        create.get_by_label("Amount").fill("0.01")
        create.get_by_label("Scope (one filter a line)").fill("feature=search")
        create.get_by_label("Recipients (one a line)").fill(f"webhook:{hook_url}")
        create.get_by_label("Tenant").fill("acme")
        create.get_by_role("button", name="Create budget").click()
        expect(page.get_by_text("budget acme-search created")).to_be_visible()
        bar = page.get_by_role("progressbar", name="acme-search:")
        expect(bar).to_be_visible()
        expect(page.locator("#budgets tbody tr", has_text="acme-search")).to_contain_text(
            "feature=search"
        )
        # Edit its scope and period: a refused change is shown on the form, then fixed.
        page.locator("#budgets tbody tr", has_text="acme-search").get_by_text("Edit").click()
        edit = page.get_by_role("form", name="Edit budget acme-search")
        edit.get_by_label("Period").select_option("rolling")
        edit.get_by_label("Scope (one filter a line)").fill("feature=search\nprovider=openai")
        edit.get_by_role("button", name="Save budget acme-search").click()
        edit = page.get_by_role("form", name="Edit budget acme-search")
        expect(edit.get_by_role("alert")).to_contain_text("rolling budget needs")
        # The refused form's page is answered 422, which the browser logs as an error.
        refused = [e for e in errors if "status of 422" in e]
        assert len(refused) == 1, errors
        errors.remove(refused[0])
        expect(edit.get_by_label("Scope (one filter a line)")).to_have_value(
            "feature=search\nprovider=openai"
        )
        edit.get_by_label("Rolling days").fill("30")
        edit.get_by_role("button", name="Save budget acme-search").click()
        expect(page.get_by_text("budget acme-search saved")).to_be_visible()
        edited = page.locator("#budgets tbody tr", has_text="acme-search")
        expect(edited).to_contain_text("rolling (30 days)")
        expect(edited).to_contain_text("feature=search, provider=openai")
        page.get_by_role("button", name="Send a test notification for acme-search").click()
        expect(page.get_by_label("Test notifications")).to_contain_text("delivered")
        assert len(hook.bodies()) == 1
        cli(db_url, "budgets", "check", "--alert")
        page.get_by_role("link", name="Budgets and alerts").click()
        row = page.locator("#alerts tbody tr", has_text="acme-search")
        expect(row.first).to_be_visible()
        wait_for(lambda: len(hook.bodies()) >= 2, "the crossing's notification")
        row.first.get_by_role("button", name="Acknowledge").click()
        expect(page.get_by_text("alert acknowledged")).to_be_visible()
        expect(page.locator("#alerts tbody tr", has_text="acme-search").first).to_contain_text(
            "by "
        )
        _shot(page, "budgets", shots)
        page.get_by_role("link", name="Overview").click()
        expect(page.get_by_role("progressbar", name="acme-search:")).to_be_visible()
        _chart_drawn(page)
        _shot(page, "overview", shots)

        # Prices: a model without a price; add a row, mark it checked, price its calls again.
        page.get_by_role("link", name="Prices", exact=True).click()
        expect(page.locator("#gaps tbody tr", has_text="acme-large")).to_be_visible()
        page.get_by_label("Provider").fill("openai")
        page.get_by_label("Model", exact=True).fill("acme-large")
        page.get_by_label("Input").fill("1.5")
        page.get_by_label("Output", exact=True).fill("6")
        page.get_by_role("button", name="Add price").click()
        expect(page.get_by_text("added a price for openai/acme-large")).to_be_visible()
        page.get_by_role("button", name="Mark openai/acme-large checked today").click()
        expect(page.get_by_text("openai/acme-large checked today")).to_be_visible()
        page.get_by_label("Filters (one a line)").fill("model=acme-large")
        page.get_by_role("button", name="Dry run").click()
        expect(page.locator("#reprice-rows tbody tr", has_text="acme-large")).to_contain_text("3")
        expect(page.get_by_text("3 of 3 calls would change")).to_be_visible()
        page.get_by_role("button", name="Apply these changes").click()
        expect(page.get_by_text("3 of 3 calls changed")).to_be_visible()
        page.get_by_role("link", name="Prices", exact=True).click()
        expect(page.locator("#gaps tbody tr", has_text="acme-large")).to_have_count(0)
        expect(page.locator("#in-force tbody tr").first).to_be_visible()
        _shot(page, "prices", shots)

        # Keys: create one (its secret is shown once), then revoke it.
        page.get_by_role("link", name="Keys").click()
        page.get_by_label("Role").select_option("reader")
        page.get_by_label("Tenant").fill("globex")
        page.get_by_label("Name").fill("finance")
        page.get_by_role("button", name="Create key").click()
        secret = page.locator("#secret").inner_text()
        assert secret.startswith("llk_")
        assert (
            httpx.get(f"{url}/v1/report", headers={"Authorization": f"Bearer {secret}"}).status_code
            == 200
        )
        _shot(page, "keys", shots)
        prefix = secret[: len("llk_") + 12]
        page.get_by_role("button", name=f"Revoke {prefix}").click()
        expect(page.get_by_text(f"revoked {prefix}")).to_be_visible()
        assert (
            httpx.get(f"{url}/v1/report", headers={"Authorization": f"Bearer {secret}"}).status_code
            == 401
        )

        # Sign out: the pages ask to sign in again.
        page.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(f"{url}/signin")
        page.goto(f"{url}/calls")
        expect(page).to_have_url(f"{url}/signin?next=%2Fcalls")
        assert not errors, errors

        # Dark mode.
        if shots:
            dark = browser.new_context(
                viewport={"width": 1366, "height": 1000}, color_scheme="dark"
            )
            dark_page = dark.new_page()
            _signin(dark_page, url, admin)
            _chart_drawn(dark_page)
            _shot(dark_page, "overview-dark", shots)
            dark.close()
        context.close()

        # A reader of acme sees acme only, on every page and data route.
        listed = api.get("/v1/events", params={"limit": 1000}).json()["events"]
        acme_ids = {e["id"] for e in listed if e["tenant"] == "acme"}
        scoped = browser.new_context(accept_downloads=True)
        page = scoped.new_page()
        _signin(page, url, reader)
        expect(page.get_by_text("tenant acme")).to_be_visible()
        body = page.content()
        assert "globex" not in body and "Top tenants" not in body
        page.goto(f"{url}/calls?last=all")
        shown = page.locator("#calls tbody tr").evaluate_all(
            "rows => rows.map(r => r.getAttribute('data-id'))"
        )
        assert shown and set(shown) <= acme_ids
        assert "globex" not in page.content()
        page.goto(f"{url}/calls?last=all&tenant=globex")
        assert page.locator("#calls tbody tr").count() == 0
        page.goto(f"{url}/calls?last=all&q={globex[0]['id']}")
        assert page.locator("#calls tbody tr").count() == 0
        response = page.goto(f"{url}/calls/{globex[0]['id']}")
        assert response is not None and response.status == 404
        page.goto(f"{url}/breakdowns?by=tenant&last=90d&every=")
        groups = page.locator("#breakdown tbody tr").all_inner_texts()
        assert len(groups) == 1 and groups[0].startswith("acme")
        assert "globex" not in page.content()
        page.goto(f"{url}/entity?tag={quote('podcast_id=rec1')}")
        assert "globex" not in page.content()
        page.goto(f"{url}/budgets")
        expect(page.get_by_role("progressbar", name="acme-search:")).to_be_visible()
        expect(page.get_by_role("button", name="Create budget")).to_have_count(0)
        assert "globex" not in page.content()
        page.goto(f"{url}/prices")
        expect(page.get_by_role("heading", name="Prices", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Add price")).to_have_count(0)
        response = page.goto(f"{url}/keys")
        assert response is not None and response.status == 403
        for route in ("/calls/export.csv?last=all", "/calls/new?last=all&after_ts=0&after_id="):
            answer = page.request.get(f"{url}{route}")
            assert answer.status == 200
            assert "globex" not in answer.text()
        exported_ids = {
            row["id"]
            for row in csv.DictReader(
                io.StringIO(page.request.get(f"{url}/calls/export.csv?last=all").text())
            )
        }
        assert exported_ids and exported_ids <= acme_ids
        forged = page.request.post(f"{url}/keys", form={"role": "admin", "csrf": "x"})
        assert forged.status == 403
        scoped.close()
