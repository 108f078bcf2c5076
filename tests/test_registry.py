"""The downlink registry is the single source of the kinds: every kind declared there has a model,
a way of being kept and a handler in the part it names, nothing is handled that is not declared,
and a kind planted in a test registry goes through parse -> persist -> replay -> apply with no
other change than its model, its declaration and its rule."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from edge_agent.core.downlinks import (
    DOWNLINKS,
    AppliedBy,
    CommandsDownlink,
    CustomersDownlink,
    Downlink,
    DownlinkKind,
    DownlinkRegistry,
    Handlers,
    Id,
    ListsDownlink,
    Persistence,
    Strict,
    models,
    parse_downlink,
)
from edge_agent.core.errors import DownlinkRejected
from edge_agent.core.events import Message
from edge_agent.core.ids import EventIdFactory
from edge_agent.core.journey import rules as rules_module
from edge_agent.core.journey.rules import JOURNEY_RULES, JourneyRules, VisitOf
from edge_agent.core.store import REGISTRY_KINDS, StoreCore
from edge_agent.core.topics import DOWNLINK_KINDS
from edge_agent.daemon.pipeline import ERASURE_COMMANDS
from edge_agent.hq.contract import channels
from edge_agent.storage.database import Database
from edge_agent.storage.state import TABLE_WRITERS, StateStore
from tests.conftest import make_config

T0 = 1_780_000_000.0
KINDS = {"customers", "orders", "lists", "planogram", "receipts", "offers", "commands"}

HANDLERS_OF_PART: dict[AppliedBy, Handlers] = {
    AppliedBy.REGISTRY: REGISTRY_KINDS,
    AppliedBy.JOURNEY: JOURNEY_RULES,
    AppliedBy.ERASURE: ERASURE_COMMANDS,
}


def test_every_topic_kind_is_declared_with_a_model_a_persistence_and_a_handler() -> None:
    assert DOWNLINKS.kinds == DOWNLINK_KINDS
    assert set(DOWNLINK_KINDS) == KINDS
    for declaration in DOWNLINKS:
        assert issubclass(declaration.model, Downlink)
        assert DOWNLINKS.by_schema(declaration.schema) is declaration
        assert isinstance(declaration.persistence, Persistence)
        assert declaration.model in HANDLERS_OF_PART[declaration.applied_by], declaration.kind
    # ... and no part handles a kind it is not declared for, nor the state store a table it has no kind for.
    for part, handlers in HANDLERS_OF_PART.items():
        assert handlers.models == {d.model for d in DOWNLINKS if d.applied_by is part}, part
    assert TABLE_WRITERS.models == {d.model for d in DOWNLINKS.kept(Persistence.TABLE)}


def test_every_downlink_model_is_declared_and_the_contract_lists_every_kind() -> None:
    defined = {m for m in Downlink.__subclasses__() if m.__module__ == models.__name__}
    assert defined == {d.model for d in DOWNLINKS}
    received = [c for c in channels("retail/v1") if c.action == "receive" and c.key.startswith("in_store_")]
    assert [c.key.removeprefix("in_store_") for c in received] == list(DOWNLINKS.kinds)
    assert [c.model for c in received] == [d.model for d in DOWNLINKS]


def test_every_kind_has_a_valid_example_for_the_parsing_properties() -> None:
    from tests.test_downlinks import VALID

    assert sorted(VALID) == sorted(DOWNLINKS.kinds)
    for declaration in DOWNLINKS:
        parsed = parse_downlink(declaration.kind, json.dumps(VALID[declaration.kind]).encode())
        assert type(parsed) is declaration.model


def test_the_rules_snapshot_holds_one_downlink_of_each_snapshot_kind() -> None:
    core = StoreCore(make_config(Path("/nonexistent")), EventIdFactory.seeded("t"))
    for kind, body in {
        "lists": {"lists": [{"customer_id": "c1", "version": 1, "items": [{"sku": "S", "source": "cart"}]}]},
        "planogram": {"items": [{"sku": "S", "name": "N", "zone": "z"}]},
        "offers": {"offers": [{"offer_id": "F", "match_sku": "S", "coupon": "C", "product": "P",
                               "valid_from": "2026-01-01T00:00:00Z", "valid_until": "2026-12-31T00:00:00Z"}]},
    }.items():  # fmt: skip
        payload = json.dumps({"schema": f"{kind}.v1", "message_id": "m", **body}).encode()
        core.apply(parse_downlink(kind, payload), T0)
    snapshot = [DOWNLINKS.of(d).kind for d in core.journey.snapshot_downlinks()]
    assert sorted(snapshot) == sorted(d.kind for d in DOWNLINKS if d.snapshot)


def _declare(
    kind: str,
    model: type[Downlink],
    persistence: Persistence = Persistence.LOG,
    applied_by: AppliedBy = AppliedBy.JOURNEY,
    snapshot: bool = False,
) -> DownlinkKind:
    return DownlinkKind(kind, model, persistence, applied_by, snapshot)


@pytest.mark.parametrize(
    ("declare", "problem"),
    [
        (lambda: _declare("in/lists", ListsDownlink), "one topic level"),
        (lambda: _declare("", ListsDownlink), "one topic level"),
        (
            lambda: _declare("customers", CustomersDownlink, Persistence.TABLE, snapshot=True),
            "only a logged kind",
        ),
        (lambda: _declare("bare", Downlink), "no schema_name"),
        (lambda: DOWNLINKS.extended([_declare("lists", CommandsDownlink)]), "share a kind"),
        (lambda: DOWNLINKS.extended([_declare("more", ListsDownlink)]), "share a model"),
    ],
)
def test_a_malformed_declaration_is_refused_when_made(declare: Callable[[], object], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        declare()


def test_a_downlink_nothing_handles_is_refused_loudly() -> None:
    core = StoreCore(make_config(Path("/nonexistent")), EventIdFactory.seeded("t"))
    commands = parse_downlink(
        "commands",
        json.dumps({"schema": "commands.v1", "message_id": "m",
                    "commands": [{"command": "erase", "customer_id": "c1", "request_id": "r"}]}).encode(),
    )  # fmt: skip
    with pytest.raises(LookupError, match="nothing in the journey rules handles CommandsDownlink"):
        core.apply(commands, T0)
    with pytest.raises(ValueError, match="two handlers"):
        JOURNEY_RULES.handles(ListsDownlink)(lambda rules, downlink, now, visit_of: [])


# ---------------------------------------------------------------------- a planted kind


class Promotion(Strict):
    promotion_id: Id
    sku: Id


class PromotionsDownlink(Downlink):
    schema_name: Literal["promotions.v1"] = Field(alias="schema")
    promotions: list[Promotion]


def _promotions(message_id: str, *skus: str) -> bytes:
    promotions = [{"promotion_id": f"P-{sku}", "sku": sku} for sku in skus]
    return json.dumps(
        {"schema": "promotions.v1", "message_id": message_id, "promotions": promotions}
    ).encode()


@pytest.mark.parametrize("snapshot", [False, True])
def test_a_planted_kind_flows_through_parse_persist_replay_and_apply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, snapshot: bool
) -> None:
    registry = DOWNLINKS.extended(
        [
            DownlinkKind(
                "promotions", PromotionsDownlink, Persistence.LOG, AppliedBy.JOURNEY, snapshot=snapshot
            )
        ]
    )
    applied: list[tuple[str, float, list[str]]] = []

    def apply_promotions(
        rules: JourneyRules, downlink: PromotionsDownlink, now: float, visit_of: VisitOf
    ) -> list[Message]:
        applied.append((downlink.message_id, now, [p.sku for p in downlink.promotions]))
        return []

    monkeypatch.setattr(
        rules_module, "JOURNEY_RULES", JOURNEY_RULES.with_handler(PromotionsDownlink, apply_promotions)
    )

    # parse: only a registry that declares the kind accepts it
    with pytest.raises(DownlinkRejected, match="unknown kind 'promotions'"):
        parse_downlink("promotions", _promotions("p-1", "S1"))
    first = parse_downlink("promotions", _promotions("p-1", "S1", "S2"), registry)
    assert isinstance(first, PromotionsDownlink)

    # persist: into the downlink log, beside a kind of the real registry
    path = tmp_path / "state.db"
    database = Database(path)
    state = StateStore(database, registry)
    state.apply(first, T0)
    lists = parse_downlink(
        "lists",
        json.dumps({"schema": "lists.v1", "message_id": "l-1", "lists": [
            {"customer_id": "c1", "version": 1, "items": [{"sku": "S1", "source": "cart"}]}]}).encode(),
    )  # fmt: skip
    state.apply(lists, T0)
    database.close()

    # replay: a restart reads it back, in order, and the rules see it again
    database = Database(path)
    state = StateStore(database, registry)
    replayed = state.logged_downlinks()
    assert replayed == [first, lists]
    core = StoreCore(make_config(tmp_path), EventIdFactory.seeded("t"))
    core.load([], [], None, replayed)
    assert applied == [("p-1", 0.0, ["S1", "S2"])]
    assert core.journey.lists["c1"] == lists.lists[0]

    # apply: a new one arrives
    second = parse_downlink("promotions", _promotions("p-2", "S3"), registry)
    state.apply(second, T0 + 10)
    assert core.apply(second, T0 + 10) == []
    assert applied[-1] == ("p-2", T0 + 10, ["S3"])

    # compaction: a snapshot kind is replaced by the rules' snapshot; another expires with age
    state.compact_downlink_log(core.journey.snapshot_downlinks, receipts_since=T0 + 5, force=True)
    kept = [d.message_id for d in state.logged_downlinks() if isinstance(d, PromotionsDownlink)]
    assert kept == ([] if snapshot else ["p-2"])
    database.close()


def test_the_real_registry_does_not_keep_a_planted_kind(tmp_path: Path) -> None:
    registry = DownlinkRegistry(
        (*DOWNLINKS, DownlinkKind("promotions", PromotionsDownlink, Persistence.LOG, AppliedBy.JOURNEY))
    )
    database = Database(tmp_path / "state.db")
    StateStore(database, registry).apply(parse_downlink("promotions", _promotions("p-1", "S1"), registry), T0)
    with pytest.raises(LookupError, match="PromotionsDownlink is not a declared downlink kind"):
        StateStore(database).apply(parse_downlink("promotions", _promotions("p-2", "S1"), registry), T0)
    database.close()
