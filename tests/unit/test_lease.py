"""The heartbeat as a lease: the holder gives its runs up before others may take them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from headrace.runner.lease import Lease
from headrace.runner.recovery import why_dead
from headrace.store import RunnerRecord

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
TIMEOUT = timedelta(seconds=90)
MARGIN = timedelta(seconds=5)


def far_runner(silent_for: timedelta) -> RunnerRecord:
    return RunnerRecord(name="far", host="h2", pid=200, heartbeat=NOW - silent_for)


def test_no_lease_before_the_first_stored_heartbeat() -> None:
    lease = Lease(90)
    assert not lease.held(now=0.0)
    assert lease.lapses_at() is None


def test_the_holder_gives_its_runs_up_a_third_of_the_timeout_before_expiry() -> None:
    lease = Lease(90)
    assert lease.renew(100.0, now=101.0)  # it had none
    assert lease.held(now=159.9)
    assert not lease.held(now=160.0)  # 90 - 30 s after the heartbeat was sent
    assert not lease.renew(130.0, now=131.0)  # held: a renewal, not a regain
    assert lease.held(now=189.9)


def test_a_late_reply_to_an_older_heartbeat_does_not_shorten_the_lease() -> None:
    lease = Lease(90)
    lease.renew(130.0, now=131.0)
    lease.renew(100.0, now=132.0)  # sent earlier, stored later
    assert lease.lapses_at() == 190.0


def test_a_lease_regained_after_it_lapsed_says_so() -> None:
    lease = Lease(90)
    lease.renew(0.0, now=1.0)
    assert not lease.held(now=60.0)
    assert lease.renew(70.0, now=71.0) is True  # the caller logs that it claims runs again


def test_the_processes_are_gone_before_the_lease_expires_for_the_holder() -> None:
    lease = Lease(90)
    grace = lease.kill_grace(kill_grace_seconds=60)
    assert lease.holds_for + grace < 90
    assert lease.kill_grace(kill_grace_seconds=2) == 2


def test_other_hosts_take_over_only_after_the_timeout_and_the_margin() -> None:
    me = RunnerRecord(name="me", host="h1", pid=100)

    def dead(silent_for: timedelta) -> str | None:
        return why_dead(
            far_runner(silent_for), me, now=NOW, heartbeat_timeout=TIMEOUT, lease_margin=MARGIN
        )

    assert dead(TIMEOUT) is None
    assert dead(TIMEOUT + MARGIN) is None  # the margin covers clocks that disagree
    gone = dead(TIMEOUT + MARGIN + timedelta(seconds=1))
    assert gone is not None and "stopped sending heartbeats" in gone


def test_the_holder_stops_before_others_may_start_while_clocks_agree_within_the_margin() -> None:
    """Seconds after a heartbeat's stamp: the holder's processes are gone by then, others
    take over no sooner, even with the holder's clock ``MARGIN`` behind theirs."""
    lease = Lease(TIMEOUT.total_seconds())
    gone_by = lease.holds_for + lease.kill_grace(kill_grace_seconds=10)
    me = RunnerRecord(name="me", host="h1", pid=100)
    skew = MARGIN
    for silent in range(0, int(gone_by + skew.total_seconds()) + 1):
        taken = why_dead(
            far_runner(timedelta(seconds=silent) + skew),  # the stamp looks older by the skew
            me,
            now=NOW,
            heartbeat_timeout=TIMEOUT,
            lease_margin=MARGIN,
        )
        assert taken is None or silent > gone_by


def test_a_live_runner_on_the_same_host_is_never_taken_over_whatever_its_lease() -> None:
    me = RunnerRecord(name="me", host="h1", pid=100)
    paused = RunnerRecord(name="other", host="h1", pid=200, heartbeat=NOW - timedelta(hours=1))
    assert (
        why_dead(
            paused,
            me,
            now=NOW,
            heartbeat_timeout=TIMEOUT,
            lease_margin=MARGIN,
            is_alive=lambda *_: True,
        )
        is None
    )
