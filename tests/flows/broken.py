"""A module that raises when imported: its runs must end CRASHED."""

from headrace import flow


@flow
def never() -> None:
    return None


raise RuntimeError("this module is broken on purpose")
