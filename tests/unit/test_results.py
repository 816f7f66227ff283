"""How a run's process encodes what its flow returned: pydantic's JSON, or a note why not."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from headrace.flow_runs import RESULT_SIZE_LIMIT
from headrace.process.child import encode_result
from headrace.process.protocol import Completed


@dataclasses.dataclass
class Pair:
    left: Decimal
    right: datetime


def test_values_json_cannot_encode_become_their_json_forms() -> None:
    when = datetime(2026, 1, 31, tzinfo=UTC)
    result = {"pair": Pair(Decimal("0.1"), when), "id": UUID(int=1), "nan": float("nan")}
    assert encode_result(result) == Completed(
        {
            "pair": {"left": "0.1", "right": "2026-01-31T00:00:00Z"},
            "id": "00000000-0000-0000-0000-000000000001",
            "nan": None,
        }
    )


def test_an_unencodable_value_is_null_with_a_message_naming_it() -> None:
    encoded = encode_result([1, object()])
    assert encoded.result is None and not encoded.result_truncated
    assert encoded.message is not None and encoded.message.startswith(
        "The result (list) is not JSON-encodable: Unable to serialize unknown type: "
    )


def test_the_size_limit_counts_utf8_json_bytes() -> None:
    fits = "é" * ((RESULT_SIZE_LIMIT - 2) // 2)  # two bytes each, and the two quotes
    assert encode_result(fits) == Completed(fits)
    over = encode_result(fits + "é")
    assert (over.result, over.result_truncated) == (None, True)
    assert over.message is not None and f"{RESULT_SIZE_LIMIT + 2:,} bytes" in over.message


def test_an_unpaired_surrogate_does_not_stop_the_result_being_measured() -> None:
    assert encode_result({"text": "a\ud800b"}) == Completed({"text": "a\ud800b"})
