from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from headrace.planning import MAX_CATCHUP_RUNS, plan_runs
from headrace.schedules import (
    MAX_TIMES,
    CronSchedule,
    DeploymentSchedule,
    IntervalSchedule,
    RRuleSchedule,
    construct_schedule,
    next_times,
    schedule_key,
)

BERLIN = ZoneInfo("Europe/Berlin")
SPRING_FORWARD = datetime(2026, 3, 29, tzinfo=BERLIN)
FALL_BACK = datetime(2026, 10, 25, tzinfo=BERLIN)
NOW = datetime(2026, 5, 4, 12, 10, tzinfo=UTC)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def deployment(**schedule: object) -> DeploymentSchedule:
    """A deployment schedule from the JSON form, as an API client would send it."""
    return DeploymentSchedule.model_validate({"schedule": schedule})


def local_day(schedule: CronSchedule | IntervalSchedule, day: datetime) -> list[datetime]:
    """The fire times whose Berlin date is `day`'s date, as Berlin wall-clock times."""
    start = day - timedelta(microseconds=1)
    end = (day + timedelta(days=1)).replace(hour=0) - timedelta(microseconds=1)
    return [t.astimezone(BERLIN) for t in next_times(schedule, after=start, until=end)]


def hourly(**fields: object) -> DeploymentSchedule:
    return DeploymentSchedule.model_validate({"schedule": {"cron": "0 * * * *"}, **fields})


# next_times


def test_cron_times_are_strictly_after_and_in_utc() -> None:
    schedule = CronSchedule(cron="*/15 * * * *")
    times = next_times(schedule, after=utc(2026, 1, 1, 10, 0), count=3)
    assert times == [utc(2026, 1, 1, 10, 15), utc(2026, 1, 1, 10, 30), utc(2026, 1, 1, 10, 45)]
    assert all(t.tzinfo is UTC for t in times)


def test_cron_in_a_timezone_fires_on_local_wall_clock() -> None:
    schedule = CronSchedule(cron="0 9 * * *", timezone="America/New_York")
    assert next_times(schedule, after=utc(2026, 7, 1), count=1) == [utc(2026, 7, 1, 13)]
    assert next_times(schedule, after=utc(2026, 1, 1), count=1) == [utc(2026, 1, 1, 14)]


def test_cron_day_or_false_needs_both_day_fields() -> None:
    # The 13th that is also a Friday: 2026-02-13 and 2026-03-13.
    friday_13 = CronSchedule(cron="0 0 13 * 5", day_or=False)
    either = CronSchedule(cron="0 0 13 * 5")
    assert next_times(friday_13, after=utc(2026, 1, 1), count=2) == [
        utc(2026, 2, 13),
        utc(2026, 3, 13),
    ]
    assert next_times(either, after=utc(2026, 1, 1), count=1) == [utc(2026, 1, 2)]


def test_interval_counts_from_its_anchor() -> None:
    schedule = IntervalSchedule(interval=timedelta(minutes=45), anchor_date=utc(2026, 1, 1, 0, 10))
    times = next_times(schedule, after=utc(2026, 1, 1, 1, 0), count=3)
    assert times == [utc(2026, 1, 1, 1, 40), utc(2026, 1, 1, 2, 25), utc(2026, 1, 1, 3, 10)]


def test_interval_extends_before_its_anchor() -> None:
    schedule = IntervalSchedule(interval=timedelta(seconds=600), anchor_date=utc(2026, 1, 1, 0, 5))
    assert next_times(schedule, after=utc(2025, 12, 31, 23, 50), count=2) == [
        utc(2025, 12, 31, 23, 55),
        utc(2026, 1, 1, 0, 5),
    ]


def test_naive_anchor_is_read_in_the_schedule_timezone() -> None:
    schedule = IntervalSchedule(
        interval=timedelta(hours=2), anchor_date=datetime(2026, 1, 1, 9), timezone="Europe/Berlin"
    )
    assert next_times(schedule, after=utc(2026, 1, 1, 8, 30), count=1) == [utc(2026, 1, 1, 10)]


def test_default_anchor_is_local_midnight() -> None:
    schedule = IntervalSchedule(interval=timedelta(hours=1), timezone="Asia/Kolkata")
    assert next_times(schedule, after=utc(2026, 1, 1), count=1) == [utc(2026, 1, 1, 0, 30)]


def test_rrule_weekly_on_monday_and_wednesday() -> None:
    schedule = RRuleSchedule(rrule="FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9", timezone="Europe/Berlin")
    times = next_times(schedule, after=utc(2026, 3, 24), until=utc(2026, 4, 2))
    # 2026-03-25 is a Wednesday; Berlin moves to summer time on 2026-03-29.
    assert times == [utc(2026, 3, 25, 8), utc(2026, 3, 30, 7), utc(2026, 4, 1, 7)]


def test_rrule_with_its_own_dtstart() -> None:
    schedule = RRuleSchedule(rrule="DTSTART:20260101T120000Z\nRRULE:FREQ=DAILY;COUNT=3")
    assert next_times(schedule, after=utc(2025, 1, 1), count=10) == [
        utc(2026, 1, 1, 12),
        utc(2026, 1, 2, 12),
        utc(2026, 1, 3, 12),
    ]


def test_until_is_inclusive_and_count_caps() -> None:
    schedule = CronSchedule(cron="0 * * * *")
    times = next_times(schedule, after=utc(2026, 1, 1), until=utc(2026, 1, 1, 3))
    assert times == [utc(2026, 1, 1, 1), utc(2026, 1, 1, 2), utc(2026, 1, 1, 3)]
    assert len(next_times(schedule, after=utc(2026, 1, 1), until=utc(2026, 1, 1, 3), count=2)) == 2


def test_next_times_has_a_hard_cap() -> None:
    schedule = CronSchedule(cron="* * * * *")
    assert len(next_times(schedule, after=utc(2026, 1, 1), count=5000)) == MAX_TIMES


def test_next_times_needs_a_bound_and_aware_datetimes() -> None:
    schedule = CronSchedule(cron="* * * * *")
    with pytest.raises(ValueError, match="until or count"):
        next_times(schedule, after=utc(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_times(schedule, after=datetime(2026, 1, 1), count=1)


def test_next_times_accepts_a_deployment_schedule() -> None:
    assert next_times(hourly(), after=utc(2026, 1, 1), count=1) == [utc(2026, 1, 1, 1)]


# Daylight saving time in Europe/Berlin


def test_daily_cron_in_the_spring_gap_runs_once_shifted_forward() -> None:
    schedule = CronSchedule(cron="30 2 * * *", timezone="Europe/Berlin")
    times = local_day(schedule, SPRING_FORWARD)
    assert times == [datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)]
    assert times[0].astimezone(UTC) == utc(2026, 3, 29, 1, 30)


def test_daily_cron_in_the_repeated_hour_runs_once_at_first_occurrence() -> None:
    schedule = CronSchedule(cron="30 2 * * *", timezone="Europe/Berlin")
    times = local_day(schedule, FALL_BACK)
    assert [t.astimezone(UTC) for t in times] == [utc(2026, 10, 25, 0, 30)]  # 02:30 CEST


def test_daily_cron_keeps_local_time_across_the_transitions() -> None:
    schedule = CronSchedule(cron="30 2 * * *", timezone="Europe/Berlin")
    times = next_times(schedule, after=utc(2026, 3, 27), count=4)
    assert times == [
        utc(2026, 3, 27, 1, 30),
        utc(2026, 3, 28, 1, 30),
        utc(2026, 3, 29, 1, 30),
        utc(2026, 3, 30, 0, 30),
    ]


def test_spring_gap_time_is_found_when_asked_from_inside_the_gap() -> None:
    schedule = CronSchedule(cron="30 2 * * *", timezone="Europe/Berlin")
    after = utc(2026, 3, 29, 1, 10)  # 03:10 CEST, just after the jump
    assert next_times(schedule, after=after, count=1) == [utc(2026, 3, 29, 1, 30)]


def test_sub_daily_cron_never_doubles_a_time_in_the_gap() -> None:
    schedule = CronSchedule(cron="*/30 * * * *", timezone="Europe/Berlin")
    times = next_times(schedule, after=utc(2026, 3, 28, 23, 59), until=utc(2026, 3, 29, 3))
    assert times == [utc(2026, 3, 29, 0) + timedelta(minutes=30 * i) for i in range(7)]


def test_hourly_interval_keeps_elapsed_spacing_through_both_transitions() -> None:
    schedule = IntervalSchedule(interval=timedelta(hours=1), timezone="Europe/Berlin")
    spring, autumn = local_day(schedule, SPRING_FORWARD), local_day(schedule, FALL_BACK)
    assert (len(spring), len(autumn)) == (23, 25)
    for times in (spring, autumn):
        gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in pairwise(times)}
        assert gaps == {timedelta(hours=1)}


def test_daily_interval_keeps_local_wall_clock() -> None:
    schedule = IntervalSchedule(
        interval=timedelta(days=1),
        anchor_date=datetime(2026, 1, 1, 2, 30),
        timezone="Europe/Berlin",
    )
    assert local_day(schedule, SPRING_FORWARD) == [datetime(2026, 3, 29, 3, 30, tzinfo=BERLIN)]
    assert [t.astimezone(UTC) for t in local_day(schedule, FALL_BACK)] == [utc(2026, 10, 25, 0, 30)]
    after_spring = next_times(schedule, after=utc(2026, 3, 30), count=1)
    assert after_spring[0].astimezone(BERLIN).hour == 2


# Models


@pytest.mark.parametrize(
    "schedule",
    [
        CronSchedule(cron="30 2 * * *", timezone="Europe/Berlin", day_or=False),
        IntervalSchedule(
            interval=timedelta(seconds=90.5), anchor_date=datetime(2026, 1, 1, tzinfo=BERLIN)
        ),
        IntervalSchedule(interval=timedelta(days=1), anchor_date=datetime(2026, 1, 1)),
        RRuleSchedule(rrule="FREQ=WEEKLY;BYDAY=MO,WE", timezone="Europe/Berlin"),
    ],
)
def test_json_round_trip(schedule: CronSchedule | IntervalSchedule | RRuleSchedule) -> None:
    original = DeploymentSchedule(
        schedule=schedule, active=False, parameters={"x": [1, 2]}, slug="nightly"
    )
    stored = original.model_dump(mode="json")
    restored = DeploymentSchedule.model_validate(stored)
    assert restored == original
    assert schedule_key(restored) == schedule_key(original)


def test_interval_is_stored_as_seconds_and_accepts_seconds() -> None:
    schedule = IntervalSchedule.model_validate({"interval": 90})
    assert schedule.interval == timedelta(seconds=90)
    assert schedule.model_dump(mode="json")["interval"] == 90.0


def test_schedule_kind_is_inferred_from_its_defining_key() -> None:
    assert isinstance(deployment(rrule="FREQ=DAILY").schedule, RRuleSchedule)
    assert isinstance(deployment(interval=60).schedule, IntervalSchedule)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "not a cron"}, "invalid cron expression"),
        ({"cron": "61 * * * *"}, "invalid cron expression"),
        ({"cron": "0 0 30 2 *"}, "never matches"),
        ({"interval": 0}, "interval must be positive"),
        ({"interval": -60}, "interval must be positive"),
        ({"rrule": "FREQ=SOMETIMES"}, "invalid rrule"),
        ({"rrule": ""}, "invalid rrule"),
        ({"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "unknown timezone"),
        ({"interval": 60, "timezone": "../etc/passwd"}, "unknown timezone"),
        ({"schedule": "daily"}, "one of cron, interval or rrule"),
    ],
)
def test_invalid_schedules_say_what_is_wrong(schedule: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DeploymentSchedule.model_validate({"schedule": schedule})


def test_schedules_are_frozen() -> None:
    schedule = CronSchedule(cron="* * * * *")
    with pytest.raises(ValidationError):
        schedule.cron = "0 * * * *"


def test_schedule_key_covers_definition_and_parameters_not_active_or_slug() -> None:
    key = schedule_key(hourly(parameters={"x": 1}))
    assert len(key) == 16
    assert schedule_key(hourly(parameters={"x": 1}, active=False, slug="renamed")) == key
    assert schedule_key(hourly(parameters={"x": 2})) != key
    changed = DeploymentSchedule(schedule=CronSchedule(cron="5 * * * *"), parameters={"x": 1})
    assert schedule_key(changed) != key


def test_schedule_key_ignores_how_the_interval_was_given() -> None:
    by_seconds = deployment(interval=3600)
    by_timedelta = DeploymentSchedule(schedule=IntervalSchedule(interval=timedelta(hours=1)))
    assert schedule_key(by_seconds) == schedule_key(by_timedelta)


# construct_schedule


def test_construct_schedule_builds_each_kind() -> None:
    cron = construct_schedule(cron="0 * * * *", timezone="Europe/Berlin")
    interval = construct_schedule(interval=60, anchor_date=utc(2026, 1, 1))
    rrule = construct_schedule(rrule="FREQ=DAILY")
    assert cron == DeploymentSchedule(
        schedule=CronSchedule(cron="0 * * * *", timezone="Europe/Berlin")
    )
    assert interval is not None and interval.schedule == IntervalSchedule(
        interval=timedelta(seconds=60), anchor_date=utc(2026, 1, 1)
    )
    assert rrule is not None and rrule.schedule == RRuleSchedule(rrule="FREQ=DAILY")
    assert construct_schedule() is None


def test_construct_schedule_rejects_more_than_one_kind() -> None:
    with pytest.raises(ValueError, match="got cron, rrule"):
        construct_schedule(cron="0 * * * *", rrule="FREQ=DAILY")
    with pytest.raises(ValueError, match="anchor_date"):
        construct_schedule(cron="0 * * * *", anchor_date=utc(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone"):
        construct_schedule(timezone="UTC")


# plan_runs


def test_plans_the_next_few_runs_within_the_horizon() -> None:
    every_ten = deployment(cron="*/10 * * * *")
    runs = plan_runs([every_ten], now=NOW, last_planned=None)
    assert [r.scheduled_time for r in runs] == [
        utc(2026, 5, 4, 12, 20),
        utc(2026, 5, 4, 12, 30),
        utc(2026, 5, 4, 12, 40),
    ]
    assert not any(r.late for r in runs)


def test_horizon_bounds_when_fewer_than_max_runs_fit() -> None:
    runs = plan_runs([hourly()], now=NOW, last_planned=None, max_runs=5)
    assert [r.scheduled_time for r in runs] == [utc(2026, 5, 4, 13)]
    longer = plan_runs([hourly()], now=NOW, last_planned=None, horizon=timedelta(hours=10))
    assert len(longer) == 3


def test_run_carries_key_parameters_and_deterministic_idempotency_key() -> None:
    schedule = hourly(parameters={"region": "eu"})
    (run,) = plan_runs([schedule], now=NOW, last_planned=None)
    key = schedule_key(schedule)
    assert run.schedule_key == key
    assert run.parameters == {"region": "eu"}
    assert run.idempotency_key == f"scheduled:{key}:2026-05-04T13:00:00+00:00"
    assert plan_runs([schedule], now=NOW, last_planned=None) == [run]


def test_parameters_are_copied_per_run() -> None:
    schedule = hourly(parameters={"region": "eu"})
    (run,) = plan_runs([schedule], now=NOW, last_planned=None)
    run.parameters["region"] = "us"
    assert schedule.parameters == {"region": "eu"}


def test_same_timing_with_different_parameters_gives_distinct_keys() -> None:
    eu, us = hourly(parameters={"region": "eu"}), hourly(parameters={"region": "us"})
    runs = plan_runs([eu, us], now=NOW, last_planned=None)
    assert len(runs) == 2
    assert len({r.idempotency_key for r in runs}) == 2
    assert sorted(r.parameters["region"] for r in runs) == ["eu", "us"]


def test_runs_from_several_schedules_are_sorted_by_time() -> None:
    schedules = [hourly(), deployment(cron="30 * * * *")]
    runs = plan_runs(schedules, now=NOW, last_planned=None, horizon=timedelta(minutes=90))
    times = [r.scheduled_time for r in runs]
    assert times == sorted(times)
    assert times == [utc(2026, 5, 4, 12, 30), utc(2026, 5, 4, 13), utc(2026, 5, 4, 13, 30)]


def test_paused_plans_nothing() -> None:
    last = {schedule_key(hourly()): NOW - timedelta(days=1)}
    assert plan_runs([hourly()], now=NOW, last_planned=last, paused=True, catchup=True) == []


def test_inactive_schedule_plans_nothing() -> None:
    inactive = hourly(active=False)
    last = {schedule_key(inactive): NOW - timedelta(days=1)}
    assert plan_runs([inactive], now=NOW, last_planned=last) == []


def test_new_schedule_has_no_missed_runs() -> None:
    runs = plan_runs([hourly()], now=NOW, last_planned={"some-other-key": utc(2026, 1, 1)})
    assert [r.late for r in runs] == [False]


def test_without_catchup_only_the_most_recent_missed_run() -> None:
    schedule = hourly()
    last = {schedule_key(schedule): utc(2026, 5, 4, 6)}
    runs = plan_runs([schedule], now=NOW, last_planned=last)
    assert [(r.scheduled_time, r.late) for r in runs] == [
        (utc(2026, 5, 4, 12), True),
        (utc(2026, 5, 4, 13), False),
    ]


def test_with_catchup_all_missed_runs() -> None:
    schedule = hourly()
    last = {schedule_key(schedule): utc(2026, 5, 4, 8)}
    runs = plan_runs([schedule], now=NOW, last_planned=last, catchup=True)
    late = [r.scheduled_time for r in runs if r.late]
    assert late == [utc(2026, 5, 4, h) for h in (9, 10, 11, 12)]


def test_catchup_is_bounded_to_the_most_recent_runs() -> None:
    schedule = hourly()
    last = {schedule_key(schedule): utc(2025, 1, 1)}
    late = [r for r in plan_runs([schedule], now=NOW, last_planned=last, catchup=True) if r.late]
    assert len(late) == MAX_CATCHUP_RUNS
    assert late[-1].scheduled_time == utc(2026, 5, 4, 12)


def test_most_recent_missed_run_is_found_after_a_long_outage() -> None:
    schedule = deployment(cron="* * * * *")
    last = {schedule_key(schedule): utc(2025, 5, 4)}
    runs = plan_runs([schedule], now=NOW, last_planned=last, max_runs=0)
    assert [(r.scheduled_time, r.late) for r in runs] == [(utc(2026, 5, 4, 12, 10), True)]


def test_nothing_missed_when_last_planned_is_ahead_of_now() -> None:
    schedule = hourly()
    last = {schedule_key(schedule): utc(2026, 5, 4, 13)}
    runs = plan_runs([schedule], now=NOW, last_planned=last, catchup=True)
    assert [r.scheduled_time for r in runs] == [utc(2026, 5, 4, 13)]


def test_sparse_schedule_missed_run_is_found_far_back() -> None:
    yearly = deployment(cron="0 0 1 1 *")
    last = {schedule_key(yearly): utc(2020, 6, 1)}
    runs = plan_runs([yearly], now=NOW, last_planned=last)
    assert [r.scheduled_time for r in runs] == [utc(2026, 1, 1)]


def test_plan_runs_is_deterministic_for_the_same_inputs() -> None:
    schedules = [hourly(parameters={"a": 1}), deployment(interval=900)]
    last = {schedule_key(s): NOW - timedelta(hours=3) for s in schedules}
    first = plan_runs(schedules, now=NOW, last_planned=last, catchup=True)
    assert plan_runs(schedules, now=NOW, last_planned=last, catchup=True) == first
