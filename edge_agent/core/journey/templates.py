"""Notification texts, Italian and English shipped, any of them overridable in the TOML.

A template is chosen by id and language and filled with ``str.format`` fields from the rule
that sends it. An override that names a field the rule does not supply would fail at send time,
so overrides are checked when the configuration is applied (``check_overrides``). Pure.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

# template id -> language -> text; the fields each rule supplies are listed per template.
SHIPPED: dict[str, dict[str, str]] = {
    "cnc.arrival.customer": {
        "en": "Welcome! Your order {order_id} is ready: collect it at {pickup_point}.",
        "it": "Benvenuto! Il tuo ordine {order_id} è pronto: ritiralo a {pickup_point}.",
    },
    "cnc.arrival.staff": {
        "en": "Customer for order {order_id} has arrived: prepare it at {pickup_point}.",
        "it": "È arrivato il cliente dell'ordine {order_id}: preparalo a {pickup_point}.",
    },
    "cnc.counter.staff": {
        "en": "Customer for order {order_id} is at {pickup_point} now.",
        "it": "Il cliente dell'ordine {order_id} è ora a {pickup_point}.",
    },
    "shelf.location": {
        "en": "On your list and in stock here: {items}.",
        "it": "Dalla tua lista, disponibili qui: {items}.",
    },
    "post_purchase.thanks": {
        "en": "Thank you for shopping with us! {coupon_text}Tell us how it went: {feedback_url}",
        "it": "Grazie per il tuo acquisto! {coupon_text}Raccontaci com'è andata: {feedback_url}",
    },
    "post_purchase.coupon": {
        "en": "Use code {coupon} for {product}, valid until {valid_until}. ",
        "it": "Usa il codice {coupon} per {product}, valido fino al {valid_until}. ",
    },
    "staff.counter_wait": {
        "en": "Customer for order {order_id} has waited {wait_min} min at {pickup_point}: hand it over.",
        "it": "Il cliente dell'ordine {order_id} aspetta da {wait_min} min a {pickup_point}: consegnalo.",
    },
    "staff.left_uncollected": {
        "en": "Customer for order {order_id} left without collecting it ({store_min} min in store, "
        "{counter_min} min at the counter).",
        "it": "Il cliente dell'ordine {order_id} è uscito senza ritirarlo ({store_min} min in negozio, "
        "{counter_min} min al banco).",
    },
    "staff.assist": {
        "en": "A customer has been in {zone} for {minutes} min and may need help.",
        "it": "Un cliente è in {zone} da {minutes} min e potrebbe aver bisogno di aiuto.",
    },
    "staff.queue": {
        "en": "{people} people in {zone}: open another till.",
        "it": "{people} persone in {zone}: aprite un'altra cassa.",
    },
    "loyalty.check_in": {
        "en": "Welcome back! {reward}{coupon_text}",
        "it": "Bentornato! {reward}{coupon_text}",
    },
    "loyalty.coupon": {
        "en": " Your code {coupon} is valid until {valid_until}.",
        "it": " Il tuo codice {coupon} è valido fino al {valid_until}.",
    },
    "shelf.item": {
        "en": "{name} (aisle {aisle}, shelf {shelf})",
        "it": "{name} (corsia {aisle}, scaffale {shelf})",
    },
}
FIELDS: dict[str, frozenset[str]] = {
    template: frozenset(
        name for text in texts.values() for _, name, _, _ in string.Formatter().parse(text) if name
    )
    for template, texts in SHIPPED.items()
}


class Templates:
    def __init__(self, overrides: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self._texts = {template: dict(texts) for template, texts in SHIPPED.items()}
        for template, texts in (overrides or {}).items():
            self._texts.setdefault(template, {}).update(texts)

    def render(self, template: str, language: str, **fields: object) -> str:
        texts = self._texts[template]
        text = texts.get(language) or texts["en"]
        return text.format(**fields)


def check_overrides(overrides: Mapping[str, Mapping[Any, str]]) -> list[tuple[str, str]]:
    """(key, problem) for each override naming an unknown template or a field never supplied."""
    problems = []
    for template, texts in overrides.items():
        if template not in SHIPPED:
            problems.append(
                (f"rules.templates.{template}", f"unknown template (known: {', '.join(sorted(SHIPPED))})")
            )
            continue
        for language, text in texts.items():
            try:
                names = {name for _, name, _, _ in string.Formatter().parse(text) if name}
            except ValueError as exc:
                problems.append((f"rules.templates.{template}.{language}", f"not a valid template: {exc}"))
                continue
            unknown = names - FIELDS[template]
            if unknown:
                available = ", ".join(sorted(FIELDS[template]))
                problems.append(
                    (f"rules.templates.{template}.{language}",
                     f"unknown field(s) {', '.join(sorted(unknown))} (available: {available})")
                )  # fmt: skip
    return problems
