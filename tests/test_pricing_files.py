"""User price files: format, validation errors, history, globs, discounts, staleness."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from llmledger.core.errors import PriceFileError
from llmledger.core.usage import Usage
from llmledger.pricing import PriceBook, PriceResolver

EXAMPLE = Path(__file__).parent / "fixtures" / "prices" / "prices.yaml"
M = 1_000_000


def at(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)


def usd(text: str) -> Decimal:
    return Decimal(text).quantize(Decimal("0.000000001"))


@pytest.fixture(scope="module")
def resolver() -> PriceResolver:
    return PriceResolver(user_prices=[EXAMPLE])


def write(tmp_path: Path, text: str, name: str = "prices.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_example_file_loads() -> None:
    book = PriceBook.load([EXAMPLE])
    assert [p.ref for p in book.prices] == [
        "user:prices.yaml:acme/acme-chat-1@2025-01-01",
        "user:prices.yaml:acme/acme-chat-1@2025-07-01",
        "user:prices.yaml:openai/ft:gpt-4o-mini-2024-07-18:*",
        "user:prices.yaml:anthropic/claude-sonnet-4-5*@2025-10-01",
        "user:prices.yaml:internal/llama-3.3-70b;service_tier=flex",
    ]
    assert book.prices[0].checked == date(2025, 6, 1)  # the file's default
    assert book.prices[1].checked == date(2025, 7, 2)  # the row's own
    assert book.prices[0].rates["input_tokens"] == Decimal("1.00")
    assert all(p.source == "file" for p in book.prices)
    assert book.exchange_rates.rate_at("BRL", date(2025, 1, 15)).rate == Decimal("6.18")


def test_history_rows_are_all_kept(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M, output_tokens=M)
    early = resolver.price("acme", "acme-chat-1", usage, at("2025-06-30T23:59:59"))
    late = resolver.price("acme", "acme-chat-1", usage, at("2025-07-01T00:00:00"))
    assert (early.cost, early.ref) == (usd("5"), "user:prices.yaml:acme/acme-chat-1@2025-01-01")
    assert (late.cost, late.ref) == (usd("4"), "user:prices.yaml:acme/acme-chat-1@2025-07-01")
    assert early.source == late.source == "file"


def test_before_the_first_row_is_unpriced(resolver: PriceResolver) -> None:
    result = resolver.price("acme", "acme-chat-1", Usage(input_tokens=1), at("2024-12-31"))
    assert result.cost is None
    assert result.unpriced_reason == (
        "no price for model 'acme-chat-1' from provider 'acme' on 2024-12-31 "
        "(the earliest user price starts 2025-01-01)"
    )


def test_glob_matches_fine_tuned_models(resolver: PriceResolver) -> None:
    result = resolver.price(
        "openai", "ft:gpt-4o-mini-2024-07-18:acme::9abc", Usage(input_tokens=M), at("2025-05-01")
    )
    assert result.cost == usd("0.3")
    assert result.source == "file"


def test_override_applies_from_its_day_and_the_catalog_before(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=100_000, output_tokens=100_000)
    model = "claude-sonnet-4-5-20250929"
    before = resolver.price("anthropic", model, usage, at("2025-09-30T12:00"))
    after = resolver.price("anthropic", model, usage, at("2025-10-01T00:00"))
    assert (before.cost, before.source) == (usd("1.8"), "catalog")
    assert (after.cost, after.source) == (usd("1.62"), "file")


def test_user_tiers(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=300_000, output_tokens=M)
    result = resolver.price("anthropic", "claude-sonnet-4-5", usage, at("2025-11-01"))
    assert result.breakdown == {"input_tokens": usd("1.62"), "output_tokens": usd("20.25")}


def test_service_tier_rows_match_only_that_tier(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M, output_tokens=M)
    flex = resolver.price("internal", "llama-3.3-70b", usage, at("2025-05-01"), service_tier="flex")
    plain = resolver.price("internal", "llama-3.3-70b", usage, at("2025-05-01"))
    assert flex.cost == usd("0.1502")
    assert flex.breakdown["requests"] == usd("0.0002")
    assert plain.cost is None


def test_discount_on_catalog_prices_is_dated_and_recorded(resolver: PriceResolver) -> None:
    usage = Usage(input_tokens=M, output_tokens=M)
    before = resolver.price("openai", "gpt-4o", usage, at("2025-02-28T23:00"))
    after = resolver.price("openai", "gpt-4o", usage, at("2025-03-01T00:00"))
    assert before.cost == usd("12.5")
    assert after.cost == usd("10")
    assert after.ref == (
        "genai-prices@0.2.3:openai/gpt-4o"
        ";discount=0.8(user:prices.yaml:discount openai/*@2025-03-01)"
    )
    assert after.price is not None and after.price.discount == Decimal("0.8")


def test_discount_by_model_glob(resolver: PriceResolver) -> None:
    flash = resolver.price("google", "gemini-2.5-flash", Usage(input_tokens=M), at("2025-11-01"))
    assert flash.cost == usd("0.27")
    other = resolver.price("google", "gemini-2.0-flash", Usage(input_tokens=M), at("2025-11-01"))
    assert other.price is not None and other.price.discount is None


def test_discount_does_not_touch_user_rows(resolver: PriceResolver) -> None:
    result = resolver.price(
        "openai", "ft:gpt-4o-mini-2024-07-18:x", Usage(input_tokens=M), at("2025-11-01")
    )
    assert result.cost == usd("0.3")


def test_exact_name_beats_glob_and_later_files_win(tmp_path: Path) -> None:
    first = write(
        tmp_path,
        """
prices:
  - {provider: acme, model: "acme-*", input: 1}
  - {provider: acme, model: acme-pro, input: 2}
""",
        "a.yaml",
    )
    second = write(tmp_path, "prices:\n  - {provider: acme, model: acme-pro, input: 3}\n", "b.yaml")
    resolver = PriceResolver(catalog=False, user_prices=[first, second])
    when = at("2025-01-01")
    assert resolver.price("acme", "acme-pro", Usage(input_tokens=M), when).cost == usd("3")
    assert resolver.price("acme", "acme-mini", Usage(input_tokens=M), when).cost == usd("1")
    assert resolver.price("ACME", "Acme-Pro", Usage(input_tokens=M), when).cost == usd("3")


def test_provider_aliases_match_user_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "prices:\n  - {provider: aws, model: my-model, input: 1}\n")
    resolver = PriceResolver(catalog=False, user_prices=[path])
    result = resolver.price("bedrock", "my-model", Usage(input_tokens=M), at("2025-01-01"))
    assert result.cost == usd("1")


def test_lookup_and_list_include_user_rows(resolver: PriceResolver) -> None:
    when = at("2025-08-01")
    assert resolver.lookup("acme", "acme-chat-1", when).rates["input_tokens"] == Decimal("0.80")
    assert resolver.lookup(None, "acme-chat-1", when).provider == "acme"
    listed = resolver.list_prices("acme", when)
    assert [p.ref for p in listed] == ["user:prices.yaml:acme/acme-chat-1@2025-07-01"]
    everything = resolver.list_prices(at=when)
    assert any(p.source == "file" for p in everything)
    assert any(p.source == "catalog" and p.discount == Decimal("0.8") for p in everything)


def test_stale_lists_latest_rows_checked_before(resolver: PriceResolver) -> None:
    refs = [p.ref for p in resolver.stale(date(2025, 7, 1))]
    assert refs == [
        "user:prices.yaml:internal/llama-3.3-70b;service_tier=flex",
        "user:prices.yaml:openai/ft:gpt-4o-mini-2024-07-18:*",
    ]
    assert resolver.stale(date(2025, 6, 1)) == []
    assert len(resolver.stale(date(2026, 1, 1))) == 4


def test_rows_without_checked_are_stale(tmp_path: Path) -> None:
    path = write(tmp_path, "prices:\n  - {provider: acme, model: m, input: 1}\n")
    assert [p.model for p in PriceResolver(catalog=False, user_prices=[path]).stale(date.min)] == [
        "m"
    ]


def test_float_rates_keep_the_digits_written(tmp_path: Path) -> None:
    path = write(tmp_path, "prices:\n  - {provider: a, model: m, input: 0.1, output: '0.3'}\n")
    price = PriceBook.load([path]).prices[0]
    assert price.rates == {"input_tokens": Decimal("0.1"), "output_tokens": Decimal("0.3")}


def test_empty_file_is_no_prices(tmp_path: Path) -> None:
    assert PriceBook.load([write(tmp_path, "")]).prices == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prices:\n  - {provider: a, model: m, input: -1}\n", r"prices\[0\]\.input: "),
        ("prices:\n  - {provider: a, model: m, input: abc}\n", r"prices\[0\]\.input: "),
        ("prices:\n  - {provider: a, model: m, input: .nan}\n", r"prices\[0\]\.input: "),
        ("prices:\n  - {provider: a, model: m, inptu: 1}\n", r"prices\[0\]\.inptu: Extra inputs"),
        ("prices:\n  - {provider: a, input: 1}\n", r"prices\[0\]\.model: Field required"),
        ("prices:\n  - {provider: a, model: m}\n", "needs at least one rate"),
        (
            "prices:\n  - {provider: a, model: m, input: 1, cache_write_1h: 2}\n",
            "cache_write_1h is a part of cache_write, so cache_write needs a rate too",
        ),
        (
            "prices:\n  - {provider: a, model: m, output: 1, cache_read: 2}\n",
            "cache_read is a part of input",
        ),
        (
            "prices:\n  - {provider: a, model: m, input: 1, tiers: [{above: 5, output: 2}]}\n",
            "tier above 5 prices output, which has no base rate",
        ),
        (
            "prices:\n  - {provider: a, model: m, input: 1,"
            " tiers: [{above: 5, input: 2}, {above: 5, input: 3}]}\n",
            "strictly increasing",
        ),
        (
            "prices:\n  - {provider: a, model: m, input: 1, from: 2025-13-01}\n",
            "not valid YAML: month must be in 1..12",
        ),
        ("discounts:\n  - {provider: a, discount: 0}\n", r"discounts\[0\]\.discount: "),
        ("version: 2\n", "version: "),
        ("bogus: 1\n", "bogus: Extra inputs"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("prices: [\n", "not valid YAML"),
        (
            "exchange_rates:\n  BRL: [{from: 2025-01-01, rate: 0}]\n",
            r"exchange_rates\.BRL\[0\]\.rate",
        ),
        ("exchange_rates:\n  BR: [{from: 2025-01-01, rate: 5}]\n", "three-letter code"),
        (
            "prices:\n  - {provider: a, model: m, input: 1, from: 2025-01-01}\n"
            "  - {provider: a, model: m, input: 2, from: 2025-01-01}\n",
            "two price rows for a/m from 2025-01-01",
        ),
    ],
)
def test_errors_name_the_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(PriceFileError, match=message) as caught:
        PriceBook.load([path])
    assert str(caught.value).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PriceFileError, match="cannot read"):
        PriceResolver(user_prices=[tmp_path / "nope.yaml"])


def test_from_mapping_for_prices_from_a_database() -> None:
    book = PriceBook.from_mapping(
        {"prices": [{"provider": "a", "model": "m", "input": "1.5"}]}, name="db"
    )
    assert book.prices[0].ref == "user:db:a/m"
    with pytest.raises(PriceFileError, match=r"^db: prices\[0\]\.input"):
        PriceBook.from_mapping(
            {"prices": [{"provider": "a", "model": "m", "input": []}]}, name="db"
        )


def test_same_rate_day_in_two_files_must_agree(tmp_path: Path) -> None:
    first = write(tmp_path, "exchange_rates:\n  BRL: [{from: 2025-01-01, rate: 5}]\n", "a.yaml")
    same = write(tmp_path, "exchange_rates:\n  BRL: [{from: 2025-01-01, rate: 5}]\n", "b.yaml")
    other = write(tmp_path, "exchange_rates:\n  BRL: [{from: 2025-01-01, rate: 6}]\n", "c.yaml")
    assert len(PriceBook.load([first, same]).exchange_rates.history("BRL")) == 1
    with pytest.raises(PriceFileError, match="already has rate 5"):
        PriceBook.load([first, other])
