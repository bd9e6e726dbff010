"""``/v1/prices`` and ``/v1/exchange-rates``: dated rows, added and verified, never overwritten."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request

from llmledger.pricing.files import row_ref
from llmledger.server.auth import Admin, Reader, get_service
from llmledger.server.pricedb import BOOK_NAME, StoredPrice, StoredRate
from llmledger.server.schemas import PriceIn, PriceOut, RateIn, RateOut, VerifyIn

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["prices"])


def _price_out(row: StoredPrice) -> PriceOut:
    ref = row_ref(
        BOOK_NAME, row.provider, row.model, row.valid_from, row.service_tier, source="database"
    )
    return PriceOut.model_validate(
        {
            "id": row.id,
            "provider": row.provider,
            "model": row.model,
            "service_tier": row.service_tier,
            "from": row.valid_from,
            "checked": row.checked,
            "rates": row.rates,
            "ref": ref,
            "created": row.created,
            "created_by": row.created_by,
        }
    )


def _rate_out(row: StoredRate) -> RateOut:
    return RateOut.model_validate(
        {
            "id": row.id,
            "currency": row.currency,
            "rate": format(row.rate, "f"),
            "from": row.valid_from,
            "checked": row.checked,
            "source": row.source,
            "created": row.created,
            "created_by": row.created_by,
        }
    )


def _today() -> date:
    return datetime.now(UTC).date()


@router.get("/prices", summary="Price rows added through the API", response_model=list[PriceOut])
def list_prices(
    request: Request,
    _principal: Reader,
    provider: Annotated[str | None, Query(description="Only this provider.")] = None,
    model: Annotated[str | None, Query(description="Only this model (pattern as stored).")] = None,
) -> list[PriceOut]:
    """Every stored price row, history included (they rank above price files and the catalog)."""
    rows = get_service(request).prices.prices(provider=provider, model=model)
    return [_price_out(row) for row in rows]


@router.post(
    "/prices",
    summary="Add a dated price row",
    status_code=201,
    response_model=PriceOut,
    responses={409: {"description": "A row for this model and day exists"}},
)
def add_price(request: Request, principal: Admin, body: PriceIn) -> PriceOut:
    """Add a price in force from `from` (UTC day); earlier rows stay for earlier calls."""
    service = get_service(request)
    row = service.prices.add_price(body.file_row(), now=datetime.now(UTC), by=principal.key.id)
    service.prices_changed()
    return _price_out(row)


@router.post(
    "/prices/{price_id}/verify", summary="Mark a price row checked", response_model=PriceOut
)
def verify_price(
    request: Request, _principal: Admin, price_id: str, body: VerifyIn | None = None
) -> PriceOut:
    """Record the day the row was checked against the provider's price page."""
    checked = (body.checked if body else None) or _today()
    return _price_out(get_service(request).prices.verify_price(price_id, checked))


@router.get(
    "/exchange-rates", summary="Exchange rates added through the API", response_model=list[RateOut]
)
def list_rates(
    request: Request,
    _principal: Reader,
    currency: Annotated[str | None, Query(description="Only this currency.")] = None,
) -> list[RateOut]:
    """Every stored rate, history included."""
    return [_rate_out(row) for row in get_service(request).prices.rates(currency=currency)]


@router.post(
    "/exchange-rates",
    summary="Add a dated exchange rate",
    status_code=201,
    response_model=RateOut,
    responses={409: {"description": "A rate for this currency and day exists"}},
)
def add_rate(request: Request, principal: Admin, body: RateIn) -> RateOut:
    """From `from` (UTC day) on, 1 USD buys `rate` units of `currency`."""
    service = get_service(request)
    row = service.prices.add_rate(
        body.currency,
        body.rate,
        body.valid_from,
        now=datetime.now(UTC),
        by=principal.key.id,
        source=body.source,
        checked=body.checked,
    )
    service.prices_changed()
    return _rate_out(row)


@router.post(
    "/exchange-rates/{rate_id}/verify",
    summary="Mark an exchange rate checked",
    response_model=RateOut,
)
def verify_rate(
    request: Request, _principal: Admin, rate_id: str, body: VerifyIn | None = None
) -> RateOut:
    """Record the day the rate was checked."""
    checked = (body.checked if body else None) or _today()
    return _rate_out(get_service(request).prices.verify_rate(rate_id, checked))
