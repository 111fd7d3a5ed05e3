"""Errors shared by every domain: bad input names the field, the rule and the value."""

from __future__ import annotations

from typing import Any


class RaydeskError(Exception):
    """Base class of raydesk's own errors."""


class ValidationError(RaydeskError, ValueError):
    """A value broke a rule. The message reads ``"{field} must be {rule}, was {value!r}"``.

    Attributes:
        field: Dotted path or column name of the offending value.
        rule: The rule it broke, as a short phrase ("> 0", "a multiple of tick_size 0.01").
        value: The value that broke it.
    """

    def __init__(self, field: str, rule: str, value: Any) -> None:
        self.field = field
        self.rule = rule
        self.value = value
        super().__init__(f"{field} must be {rule}, was {value!r}")


class BatchError(ValidationError):
    """A market-data batch broke the contract (schema, kinds, sides, sizes, clocks)."""


class IllegalTransition(RaydeskError):
    """An order was asked to move between two statuses the transition table forbids."""

    def __init__(self, client_order_id: str, status: str, event: str) -> None:
        self.client_order_id = client_order_id
        self.status = status
        self.event = event
        super().__init__(
            f"order {client_order_id}: transition on {event} must be legal from {status}, "
            f"was illegal"
        )
