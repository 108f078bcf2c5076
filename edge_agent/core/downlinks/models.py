"""The messages HQ sends a store (DESIGN §5 "down"), as pydantic models that validate them whole.

Every model here is declared, with its topic kind and how it is kept, in ``registry``; parsing
(``parsing``) looks the model up there.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edge_agent.core.registry import IDENTITY_KEY_BYTES

Id = Annotated[str, Field(min_length=1, max_length=128)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Consent(Strict):
    service: bool = False
    marketing: bool = False


class CustomerRecord(Strict):
    customer_id: Id
    identity_key: bytes
    consent: Consent = Consent()

    @field_validator("identity_key", mode="before")
    @classmethod
    def _key_from_hex(cls, value: object) -> bytes:
        if not isinstance(value, str):
            raise ValueError("must be a hex string")
        try:
            key = bytes.fromhex(value)
        except ValueError:
            raise ValueError("must be a hex string") from None
        if len(key) != IDENTITY_KEY_BYTES:
            raise ValueError(f"must be {IDENTITY_KEY_BYTES} bytes ({IDENTITY_KEY_BYTES * 2} hex digits)")
        return key


class Downlink(Strict):
    message_id: Id


class CustomersDownlink(Downlink):
    """Registry changes. ``full=True`` replaces the whole registry (a resync) at ``version``."""

    schema_name: Literal["customers.v1"] = Field(alias="schema")
    full: bool = False
    version: Annotated[int, Field(ge=0)] | None = None
    upsert: list[CustomerRecord] = []
    delete: list[Id] = []


class OrderRecord(Strict):
    order_id: Id
    customer_id: Id
    status: Literal["ready", "collected", "cancelled"]
    # A record older than the one held (lower version) is ignored: downlinks may arrive out of order.
    version: Annotated[int, Field(ge=0)] = 0
    pickup_point: Annotated[str, Field(min_length=1, max_length=128)]
    # The zone where orders are handed over: reaching it alerts staff "customer at the counter".
    pickup_zone: Id | None = None
    items: list[Annotated[str, Field(max_length=128)]] = []


class OrdersDownlink(Downlink):
    schema_name: Literal["orders.v1"] = Field(alias="schema")
    orders: Annotated[list[OrderRecord], Field(min_length=1)]


Sku = Annotated[str, Field(min_length=1, max_length=64)]
Label = Annotated[str, Field(max_length=128)]
Version = Annotated[int, Field(ge=0)]


class ListItem(Strict):
    sku: Sku
    source: Literal["wishlist", "search", "cart"]


class ShoppingList(Strict):
    """A customer's list as HQ knows it now; a higher ``version`` replaces a lower one."""

    customer_id: Id
    version: Version
    items: Annotated[list[ListItem], Field(max_length=500)]


class ListsDownlink(Downlink):
    schema_name: Literal["lists.v1"] = Field(alias="schema")
    lists: Annotated[list[ShoppingList], Field(min_length=1)]


class PlanogramItem(Strict):
    """Where a SKU is in this store, and whether it is on the shelf."""

    sku: Sku
    name: Annotated[str, Field(min_length=1, max_length=128)]
    zone: Id
    aisle: Label = ""
    shelf: Label = ""
    category: Label = ""
    in_stock: bool = True


class PlanogramDownlink(Downlink):
    """Changes to the planogram; ``full=True`` replaces it (at ``version``)."""

    schema_name: Literal["planogram.v1"] = Field(alias="schema")
    full: bool = False
    version: Version | None = None
    items: list[PlanogramItem] = []
    remove: list[Sku] = []


class ReceiptItem(Strict):
    sku: Sku
    quantity: Annotated[int, Field(ge=1)] = 1
    price: Annotated[float, Field(ge=0)] = 0.0
    category: Label = ""


class ReceiptRecord(Strict):
    receipt_id: Id
    customer_id: Id
    items: Annotated[list[ReceiptItem], Field(min_length=1, max_length=500)]
    total: Annotated[float, Field(ge=0)]
    # Coupon codes the till took with this purchase; one this store issued becomes redemption.v1.
    coupons: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=50)] = []


class ReceiptsDownlink(Downlink):
    """Purchases at this store's tills by identified customers (loyalty card, app)."""

    schema_name: Literal["receipts.v1"] = Field(alias="schema")
    receipts: Annotated[list[ReceiptRecord], Field(min_length=1)]


class OfferRecord(Strict):
    """A related-product rule: bought this SKU (or this category) -> this coupon, while valid."""

    offer_id: Id
    match_sku: Sku | None = None
    match_category: Label | None = None
    coupon: Annotated[str, Field(min_length=1, max_length=64)]
    product: Annotated[str, Field(min_length=1, max_length=128)]  # what the coupon is for, shown
    valid_from: datetime
    valid_until: datetime

    @model_validator(mode="after")
    def _one_match(self) -> OfferRecord:
        if (self.match_sku is None) == (self.match_category is None):
            raise ValueError("give exactly one of match_sku and match_category")
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class OffersDownlink(Downlink):
    schema_name: Literal["offers.v1"] = Field(alias="schema")
    full: bool = False
    offers: list[OfferRecord] = []
    remove: list[Id] = []


class EraseCommand(Strict):
    """Forget a customer: registry, lists, orders, open visit, journey, unsent messages."""

    command: Literal["erase"]
    customer_id: Id
    request_id: Id  # HQ's reference, echoed in the erasure receipt


class CommandsDownlink(Downlink):
    schema_name: Literal["commands.v1"] = Field(alias="schema")
    commands: Annotated[list[EraseCommand], Field(min_length=1, max_length=1000)]
