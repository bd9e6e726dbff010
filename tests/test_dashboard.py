"""The dashboard's pages over HTTP (the app in process, on SQLite and PostgreSQL): sessions,
CSRF, roles, tenant scope on every page and data route, exports, assets served offline."""

from __future__ import annotations

import csv
import io
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import openpyxl
import pytest
from fastapi.testclient import TestClient

from llmledger.alerts import Budget
from llmledger.core.events import UsageEvent
from llmledger.core.settings import load_settings
from llmledger.core.usage import Usage
from llmledger.server.app import create_app
from llmledger.server.dashboard.session import SESSION_COOKIE, session_secret
from llmledger.store import open_store
from tests.alerting_support import webhook_server

NOW = datetime.now(UTC)
SECRET_USER = "globex-secret-user"


def _events() -> list[UsageEvent]:
    events = []
    for i in range(30):
        tenant = "acme" if i % 2 else "globex"
        events.append(
            UsageEvent(
                provider="openai",
                model="gpt-4o-mini",
                ts=NOW - timedelta(hours=3 * i + 1),
                tenant=tenant,
                user=SECRET_USER if tenant == "globex" else "ana",
                feature="chat" if i % 3 else "search",
                usage=Usage(input_tokens=1000 + i, output_tokens=100),
                duration_ms=100.0 + i,
                tags={"podcast_id": f"rec{i % 3}", "owner": f"{tenant[0]}-owner"},
            )
        )
    events.append(
        UsageEvent(
            provider="openai",
            model="gpt-4o-mini",
            ts=NOW - timedelta(minutes=5),
            tenant="acme",
            user='=HYPERLINK("http://evil.example")',
            feature="chat",
            tags={"note": "@SUM(A1)"},
        )
    )
    return events


class Dashboard:
    """The app over a filled ledger, and keys to sign in with."""

    def __init__(self, db_url: str, home: Path) -> None:
        self.store = open_store(db_url)
        settings = load_settings(home=home, database_url=db_url, features={"chat": "Chat bot"})
        self.app = create_app(settings, store=self.store)
        service = self.app.state.service
        self.events = [service.pricer.priced(e) for e in _events()]
        self.store.write(self.events)
        self.keys = service.keys
        self.admin = self.keys.create("admin", now=NOW).secret
        self.reader = self.keys.create("reader", tenant="acme", now=NOW).secret
        self.ingest = self.keys.create("ingest", tenant="acme", now=NOW).secret

    def client(self) -> TestClient:
        return TestClient(self.app, follow_redirects=False)


@pytest.fixture
def dash(db_url: str, tmp_path: Path) -> Iterator[Dashboard]:
    found = Dashboard(db_url, tmp_path / "home")
    yield found
    found.store.close()


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match is not None, html
    return match.group(1)


def signed_in(dash: Dashboard, key: str) -> TestClient:
    client = dash.client()
    form = client.get("/signin")
    answer = client.post("/signin", data={"api_key": key, "csrf": _csrf(form.text), "next": "/"})
    assert answer.status_code == 303, answer.text
    return client


def test_pages_ask_to_sign_in_and_the_session_is_a_signed_httponly_cookie(
    dash: Dashboard,
) -> None:
    with dash.client() as client:
        answer = client.get("/calls?feature=chat")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=%2Fcalls%3Ffeature%3Dchat"
        form = client.get("/signin")
        csrf = _csrf(form.text)
        assert "httponly" in form.headers["set-cookie"].lower()
        refused = client.post("/signin", data={"api_key": dash.admin, "csrf": "forged"})
        assert refused.status_code == 403 and "form expired" in refused.text
        wrong = client.post("/signin", data={"api_key": dash.admin + "x", "csrf": csrf})
        assert wrong.status_code == 401 and "unknown or revoked" in wrong.text
        writer = client.post("/signin", data={"api_key": dash.ingest, "csrf": csrf})
        assert writer.status_code == 401 and "ingest key cannot read" in writer.text
        answer = client.post(
            "/signin", data={"api_key": dash.admin, "csrf": csrf, "next": "//evil.example/"}
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie
        secret = dash.admin.split("_", 2)[2]  # llk_<id>_<secret>; the secret may hold "_"
        assert secret not in cookie  # the token is never in the cookie
        assert client.get("/").status_code == 200


def test_a_forged_cookie_or_a_revoked_key_ends_the_session(dash: Dashboard) -> None:
    with signed_in(dash, dash.reader) as client:
        assert client.get("/calls").status_code == 200
        good = client.cookies[SESSION_COOKIE]
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, good[:-2] + ("AA" if good[-2:] != "AA" else "BB"))
        assert client.get("/calls").status_code == 303
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, good)
        assert client.get("/calls").status_code == 200
        prefix = dash.reader[: len("llk_") + 12]
        dash.keys.revoke(prefix, now=NOW)
        assert client.get("/calls").status_code == 303


def test_forms_that_change_anything_need_the_session_csrf_token(dash: Dashboard) -> None:
    with signed_in(dash, dash.admin) as client:
        before = len(dash.keys.list())
        for token in ("", "forged"):
            answer = client.post("/keys", data={"role": "reader", "tenant": "x", "csrf": token})
            assert answer.status_code == 403
            assert client.post("/signout", data={"csrf": token}).status_code == 403
            assert (
                client.post("/prices", data={"provider": "a", "model": "b", "csrf": token})
            ).status_code == 403
        assert len(dash.keys.list()) == before
        csrf = _csrf(client.get("/keys").text)
        made = client.post("/keys", data={"role": "reader", "tenant": "x", "csrf": csrf})
        assert made.status_code == 201 and 'id="secret"' in made.text
        assert len(dash.keys.list()) == before + 1
        assert client.post("/signout", data={"csrf": csrf}).status_code == 303


def test_readers_cannot_manage_keys_or_prices(dash: Dashboard) -> None:
    with signed_in(dash, dash.reader) as client:
        csrf = _csrf(client.get("/calls").text)
        assert client.get("/keys").status_code == 403
        assert client.post("/keys", data={"role": "admin", "csrf": csrf}).status_code == 403
        answer = client.post(
            "/prices", data={"provider": "a", "model": "b", "input": "1", "csrf": csrf}
        )
        assert answer.status_code == 403
        assert 'href="/keys"' not in client.get("/").text
        assert "Add price" not in client.get("/prices").text


def test_a_reader_of_one_tenant_sees_none_of_another_on_any_page_or_data_route(
    dash: Dashboard,
) -> None:
    globex = [e for e in dash.events if e.tenant == "globex"]
    routes = [
        "/",
        "/?stack=model",
        "/?stack=feature",
        "/calls?last=all",
        "/calls?last=all&tenant=globex",
        "/calls?last=all&user=" + SECRET_USER,
        f"/calls?last=all&q={globex[0].id}",
        "/calls?last=all&q=owner=g-owner",
        "/calls/new?last=all&after_ts=0&after_id=",
        "/calls/export.csv?last=all",
        "/breakdowns?by=tenant&by=user&last=90d",
        "/breakdowns?by=user&every=&last=90d&tag=owner",
        "/breakdowns?where=tenant%3Dglobex&by=user&last=90d",
        "/entity?tag=owner%3Dg-owner",
        "/entity?tag=podcast_id%3Drec1",
        "/prices",
        "/budgets",
    ]
    for tenant in ("acme", "globex"):
        cap = Budget(name=f"{tenant}-cap", amount=Decimal("0.0001"), tenant=tenant, created=NOW)
        dash.store.add_budget(cap, now=NOW)
    dash.app.state.service.monitor.check(datetime.now(UTC))
    assert {a.tenant for a in dash.store.list_alerts(tenant="*")} >= {"acme", "globex"}
    with signed_in(dash, dash.reader) as client:
        assert "acme-cap" in client.get("/budgets").text and "acme-cap" in client.get("/").text
        for route in routes:
            answer = client.get(route)
            assert answer.status_code == 200, (route, answer.text)
            # What the forms echo back aside, nothing of globex is on the page.
            shown = re.sub(
                r"<form.*?</form>|data-query=\"[^\"]*\"", "", answer.text, flags=re.DOTALL
            )
            assert SECRET_USER not in shown and "globex" not in shown, route
        for event in globex[:3]:
            assert client.get(f"/calls/{event.id}").status_code == 404
        book = openpyxl.load_workbook(io.BytesIO(client.get("/calls/export.xlsx?last=all").content))
        cells = {str(c.value) for row in book["calls"].iter_rows() for c in row}
        assert not any("globex" in c for c in cells)
        rows = list(csv.DictReader(io.StringIO(client.get("/calls/export.csv?last=all").text)))
        assert {r["tenant"] for r in rows} == {"acme"}
        assert len(rows) == len([e for e in dash.events if e.tenant == "acme"])
    with signed_in(dash, dash.admin) as client:
        assert SECRET_USER in client.get("/calls?last=all").text
        assert client.get(f"/calls/{globex[0].id}").status_code == 200


def test_exports_of_calls_escape_formulas(dash: Dashboard) -> None:
    with signed_in(dash, dash.admin) as client:
        answer = client.get("/calls/export.csv?last=24h&feature=chat&tenant=acme")
        assert answer.headers["content-disposition"].startswith("attachment;")
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        hostile = [r for r in rows if "HYPERLINK" in r["user"]]
        assert hostile and hostile[0]["user"].startswith("'=")
        assert {r["feature"] for r in rows} == {"chat"}
        xlsx = client.get("/calls/export.xlsx?last=24h&user=" + quote(hostile[0]["user"][1:]))
        book = openpyxl.load_workbook(io.BytesIO(xlsx.content))
        header = [c.value for c in book["calls"][1]]
        (row,) = list(book["calls"].iter_rows(min_row=2, values_only=True))
        record = dict(zip(header, row, strict=True))
        assert str(record["user"]).startswith("'=")
        assert record["tags"] == '{"note": "@SUM(A1)"}'  # a JSON object: nothing to run
        assert isinstance(record["input_tokens"], int)


def test_bad_filters_are_shown_not_crashed(dash: Dashboard) -> None:
    with signed_in(dash, dash.admin) as client:
        for route, message in (
            ("/breakdowns?by=nope", "unknown dimension"),
            ("/breakdowns?tz=Mars/Base", "unknown time zone"),
            ("/breakdowns?limit=0", "limit"),
            ("/calls?q=free+text", "search takes an event id or KEY=VALUE"),
            ("/calls?last=forever", "forever"),
            ("/calls/export.csv?since=yesterdayish", "yesterdayish"),
            ("/entity?tag=nothing", "KEY=VALUE"),
            ("/calls/NOPE", "no event"),
        ):
            answer = client.get(route)
            assert 400 <= answer.status_code < 500, route
            assert message in answer.text, (route, answer.text)


def test_new_calls_come_after_the_newest_shown(dash: Dashboard) -> None:
    newest = max(dash.events, key=lambda e: (e.ts, e.id))
    older = sorted(dash.events, key=lambda e: (e.ts, e.id))[-3]
    with signed_in(dash, dash.admin) as client:
        from llmledger.query.periods import to_us

        none = client.get(f"/calls/new?last=all&after_ts={to_us(newest.ts)}&after_id={newest.id}")
        assert none.status_code == 200 and "data-id" not in none.text
        two = client.get(f"/calls/new?last=all&after_ts={to_us(older.ts)}&after_id={older.id}")
        assert re.findall(r'data-id="([^"]+)"', two.text) == [
            e.id for e in sorted(dash.events, key=lambda e: (e.ts, e.id), reverse=True)[:2]
        ]


def test_feature_badges_show_declared_names_and_pages_load_nothing_from_elsewhere(
    dash: Dashboard,
) -> None:
    with signed_in(dash, dash.admin) as client:
        calls = client.get("/calls?last=all&feature=chat")
        assert "Chat bot" in calls.text
        assert "default-src 'self'" in calls.headers["content-security-policy"]
        for route in (
            "/",
            "/calls",
            "/breakdowns",
            "/entity?tag=podcast_id=rec1",
            "/prices",
            "/budgets",
        ):
            html = client.get(route).text
            sources = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert sources and not [s for s in sources if "//" in s], route
        shipped = resources.files("plotly") / "package_data" / "plotly.min.js"
        assert client.get("/static/plotly.min.js").content == shipped.read_bytes()
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/static/../app.py").status_code == 404


def test_the_session_secret_is_made_once_and_kept_private(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path / "home")
    first = session_secret(settings)
    assert session_secret(settings) == first and len(first) == 64
    kept = tmp_path / "home" / "session-secret"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert session_secret(load_settings(home=tmp_path, session_secret="given")) == "given"


def test_reprice_from_the_prices_page_is_for_admins_and_dry_by_default(dash: Dashboard) -> None:
    with signed_in(dash, dash.reader) as client:
        csrf = _csrf(client.get("/calls").text)
        assert client.post("/prices/reprice", data={"csrf": csrf}).status_code == 403
    with signed_in(dash, dash.admin) as client:
        csrf = _csrf(client.get("/prices").text)
        assert client.post("/prices/reprice", data={"csrf": "forged"}).status_code == 403
        before = {e.id: e.cost for e in dash.store.events()}
        dry = client.post("/prices/reprice", data={"csrf": csrf, "where": "tenant=acme"})
        assert (
            dry.status_code == 200 and "Dry run" in dry.text and "Apply these changes" in dry.text
        )
        bad = client.post("/prices/reprice", data={"csrf": csrf, "since": "soon"})
        assert bad.status_code == 400 and "soon" in bad.text
        assert {e.id: e.cost for e in dash.store.events()} == before


def test_a_budgets_scope_and_period_change_on_its_edit_form(dash: Dashboard) -> None:
    budget = Budget(
        name="acme-chat", amount=Decimal(5), where=("feature=chat",), tenant="acme", created=NOW
    )
    dash.store.add_budget(budget, now=NOW)
    with signed_in(dash, dash.admin) as client:
        page = client.get("/budgets")
        csrf = _csrf(page.text)
        assert 'aria-label="Edit budget acme-chat"' in page.text
        assert ">feature=chat</textarea>" in page.text
        form = {
            "csrf": csrf,
            "name": "acme-chat",
            "amount": "5",
            "currency": "USD",
            "period": "week",
            "rolling_days": "",
            "tz": "Europe/Lisbon",
            "where": "model=gpt-4o-mini\nfeature!=search",
            "thresholds": "50,80,100",
            "recipients": "",
            "active": "on",
        }
        route = f"/budgets/{budget.id}/edit"
        assert client.post(route, data={**form, "csrf": "forged"}).status_code == 403
        saved = client.post(route, data=form)
        assert saved.status_code == 200 and "budget acme-chat saved" in saved.text
        changed = dash.store.get_budget(budget.id)
        assert changed is not None and changed.tenant == "acme"
        assert changed.period == "week" and changed.tz == "Europe/Lisbon"
        assert changed.where == ("model=gpt-4o-mini", "feature!=search")
        assert ">model=gpt-4o-mini\nfeature!=search</textarea>" in saved.text

        # A rolling period; the days typed are kept only for a rolling one.
        client.post(route, data={**form, "period": "rolling", "rolling_days": "10"})
        rolling = dash.store.get_budget(budget.id)
        assert rolling is not None and (rolling.period, rolling.rolling_days) == ("rolling", 10)
        client.post(route, data={**form, "period": "month", "rolling_days": "10"})
        monthly = dash.store.get_budget(budget.id)
        assert monthly is not None and (monthly.period, monthly.rolling_days) == ("month", None)

        # Refused changes: the budget's form opens again with what was typed and why.
        for changes, reason, shown in (
            (
                {"period": "rolling", "rolling_days": ""},
                "rolling budget needs",
                "<option selected>rolling",
            ),
            ({"where": "colour=blue"}, "colour", ">colour=blue</textarea>"),
            ({"period": "fortnight"}, "period", 'value="Europe/Lisbon"'),
            ({"tz": "Mars/Base", "amount": "7"}, "Mars/Base", 'value="7"'),
        ):
            refused = client.post(route, data={**form, **changes})
            assert refused.status_code in (400, 422), changes
            match = re.search(
                r'<details open>.*?aria-label="Edit budget acme-chat">(.*?)</form>',
                refused.text,
                re.S,
            )
            assert match is not None, changes
            assert 'role="alert"' in match.group(1) and reason in match.group(1), changes
            assert shown in match.group(1), changes
        assert dash.store.get_budget(budget.id) == monthly

        # An empty scope widens the budget to every call of its tenant.
        client.post(route, data={**form, "where": ""})
        widened = dash.store.get_budget(budget.id)
        assert widened is not None and widened.where == () and widened.tenant == "acme"
        with signed_in(dash, dash.reader) as reader:
            reader_csrf = _csrf(reader.get("/budgets").text)
            assert 'aria-label="Edit budget' not in reader.get("/budgets").text
            answer = reader.post(route, data={**form, "csrf": reader_csrf, "where": ""})
            assert answer.status_code == 403
        assert dash.store.get_budget(budget.id) == widened


def test_budgets_are_made_edited_tested_and_their_alerts_acknowledged_by_admins(
    dash: Dashboard,
) -> None:
    with webhook_server() as (hook_url, hook), signed_in(dash, dash.admin) as client:
        page = client.get("/budgets")
        assert page.status_code == 200 and "no budgets yet" in page.text
        csrf = _csrf(page.text)
        form = {
            "csrf": csrf,
            "name": "chat-month",
            "amount": "0.001",
            "period": "month",
            "tz": "UTC",
            "where": "feature=chat",
            "thresholds": "50, 100",
            "recipients": f"webhook:{hook_url}",
            "tenant": "acme",
        }
        forged = client.post("/budgets", data={**form, "csrf": "forged"})
        assert forged.status_code == 403 and dash.store.list_budgets(tenant="*") == []
        bad = client.post("/budgets", data={**form, "amount": "-3"})
        assert bad.status_code == 400 and "amount" in bad.text
        assert 'value="-3"' in bad.text and "feature=chat</textarea>" in bad.text
        made = client.post("/budgets", data=form)
        assert made.status_code == 201 and "budget chat-month created" in made.text
        (budget,) = dash.store.list_budgets(tenant="*")
        assert budget.tenant == "acme" and budget.where == ("feature=chat",)
        assert budget.thresholds == (50, 100) and budget.amount == Decimal("0.001")
        assert 'aria-label="chat-month: ' in made.text and "crossed 50%, 100%" in made.text
        assert 'data-budget="chat-month"' in client.get("/").text
        again = client.post("/budgets", data=form)
        assert again.status_code == 409

        edited = client.post(
            f"/budgets/{budget.id}/edit",
            data={
                "csrf": csrf,
                "amount": "1000",
                "thresholds": "80",
                "recipients": f"webhook:{hook_url}",
                "active": "on",
            },
        )
        assert edited.status_code == 200 and "budget chat-month saved" in edited.text
        changed = dash.store.get_budget(budget.id)
        assert changed is not None and changed.amount == Decimal(1000)
        assert changed.thresholds == (80,) and changed.where == ("feature=chat",)

        tested = client.post(f"/budgets/{budget.id}/test", data={"csrf": csrf})
        assert tested.status_code == 200 and "delivered" in tested.text
        assert len(hook.bodies()) == 1

        client.post(
            f"/budgets/{budget.id}/edit",
            data={"csrf": csrf, "amount": "0.001", "recipients": "", "active": "on"},
        )
        alone = client.post(f"/budgets/{budget.id}/test", data={"csrf": csrf})
        assert "has no recipients" in alone.text
        dash.app.state.service.monitor.check(datetime.now(UTC))
        (alert,) = dash.store.list_alerts(tenant="*")
        page = client.get("/budgets")
        assert alert.title in page.text and f"Acknowledge {alert.title}" in page.text
        with signed_in(dash, dash.reader) as reader:
            reader_csrf = _csrf(reader.get("/budgets").text)
            shown = reader.get("/budgets").text
            assert "chat-month" in shown and "Create a budget" not in shown
            assert "Acknowledge" not in shown
            for route in (
                "/budgets",
                f"/budgets/{budget.id}/edit",
                f"/budgets/{budget.id}/test",
                f"/alerts/{alert.id}/ack",
            ):
                answer = reader.post(route, data={"csrf": reader_csrf, "amount": "1"})
                assert answer.status_code == 403, route
        assert client.post(f"/alerts/{alert.id}/ack", data={"csrf": "x"}).status_code == 403
        acked = client.post(f"/alerts/{alert.id}/ack", data={"csrf": csrf})
        assert acked.status_code == 200 and "alert acknowledged" in acked.text
        stored = dash.store.get_alert(alert.id)
        assert stored is not None and stored.acked is not None
        assert f"Acknowledge {alert.title}" not in acked.text
        missing = client.post("/alerts/nope/ack", data={"csrf": csrf})
        assert missing.status_code == 404
