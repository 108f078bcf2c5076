"""A table from downlink model to the method that applies (or writes) it, instead of isinstance chains.

Each part that takes downlinks in keeps one table and fills it by decorating its methods::

    JOURNEY_RULES: Handlers[JourneyRules, [float, VisitOf], list[Message]] = Handlers("journey rules")

    class JourneyRules:
        @JOURNEY_RULES.handles(ListsDownlink)
        def _apply_lists(self, downlink: ListsDownlink, now: float, visit_of: VisitOf) -> list[Message]:
            ...

so a handler is typed for its own model and a kind's handler sits beside the others of its part.
``tests/test_registry.py`` checks every table against the declarations in ``registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from edge_agent.core.downlinks.models import Downlink

Owner = TypeVar("Owner")
D = TypeVar("D", bound=Downlink)
P = ParamSpec("P")
R = TypeVar("R")


class Handlers(Generic[Owner, P, R]):
    """Which method of ``Owner`` handles each downlink model; filled once, when the class is made."""

    __slots__ = ("_by_model", "part")

    def __init__(self, part: str) -> None:
        self.part = part
        self._by_model: dict[type[Downlink], Callable[Concatenate[Owner, Any, P], R]] = {}

    def handles(
        self, model: type[D]
    ) -> Callable[[Callable[Concatenate[Owner, D, P], R]], Callable[Concatenate[Owner, D, P], R]]:
        """Decorate the method that handles ``model``; the method itself is left as it is."""

        def register(method: Callable[Concatenate[Owner, D, P], R]) -> Callable[Concatenate[Owner, D, P], R]:
            if model in self._by_model:
                raise ValueError(f"{model.__name__} has two handlers in the {self.part}")
            self._by_model[model] = method
            return method

        return register

    def with_handler(
        self, model: type[D], method: Callable[Concatenate[Owner, D, P], R]
    ) -> Handlers[Owner, P, R]:
        """A copy with one more handler (a kind tried out before it is declared for good)."""
        copy: Handlers[Owner, P, R] = Handlers(self.part)
        copy._by_model.update(self._by_model)
        copy.handles(model)(method)
        return copy

    @property
    def models(self) -> frozenset[type[Downlink]]:
        return frozenset(self._by_model)

    def __contains__(self, model: object) -> bool:
        return model in self._by_model

    def apply(self, owner: Owner, downlink: Downlink, /, *args: P.args, **kwargs: P.kwargs) -> R:
        handler = self._by_model.get(type(downlink))
        if handler is None:
            raise LookupError(f"nothing in the {self.part} handles {type(downlink).__name__}")
        return handler(owner, downlink, *args, **kwargs)
