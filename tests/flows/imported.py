"""Flows in a module that ``tests.flows.nested`` imports from: one imported, one not."""

from __future__ import annotations

from headrace import flow


@flow
def imported_flow(word: str = "hi") -> str:
    return word.upper()


@flow
def not_imported() -> None:
    return None
