"""A flow no test deployment imports: the webserver must not load it unless told to.

Nothing in the test suite imports this module; the webserver's tests name it
only by its file path.
"""

from __future__ import annotations

from headrace import flow


@flow
def unmanaged_flow(n: int = 1) -> int:
    return n + 100
