"""The connection ramp (net/ramp.py) fed with the rates the three kinds of link produce."""

from __future__ import annotations

from invokeai_model_install.net.ramp import ConnectionRamp

MB = 1_000_000


def drive(ramp: ConnectionRamp, rate_of, seconds: float = 3.0, step: float = 0.05) -> list[int]:
    """Feed ``ramp`` samples every ``step`` s for a link whose rate is ``rate_of(limit)`` bytes/s; -> limits seen."""
    now, total, seen = 0.0, 1, []
    ramp.observe(now, total, ramp.limit)  # the first byte
    while now < seconds:
        total += int(rate_of(ramp.limit) * step)
        now += step
        seen.append(ramp.observe(now, total, ramp.limit))
    return seen


def test_a_capped_link_gets_every_connection_within_a_few_samples():
    ramp = ConnectionRamp(start=1, most=8)
    seen = drive(ramp, lambda n: n * 40 * MB, step=0.025)  # a CDN: 40 MB/s per connection
    assert seen[-1] == 8 and not ramp.frozen
    assert seen.index(8) <= 2  # one 50 ms window at one connection, then all of them


def test_a_link_one_connection_fills_keeps_one_connection():
    ramp = ConnectionRamp(start=1, most=8)
    seen = drive(ramp, lambda n: 1100 * MB, step=0.025)  # loopback / a LAN mirror: more connections, same rate
    assert seen[-1] == 1 and ramp.frozen
    assert seen.count(2) * 0.025 <= 0.15 and max(seen) == 2  # one judged try with two (settle + judge), then back for good


def test_more_connections_that_do_not_pay_are_taken_back_for_good():
    ramp = ConnectionRamp(start=1, most=8)
    seen = drive(ramp, lambda n: 300 * MB)  # CPU-bound on a busy machine: more connections, same rate
    assert max(seen) > 1  # it tried
    assert seen[-1] == 1 and ramp.frozen  # and went back
    assert seen[-10:] == [1] * 10


def test_connections_are_doubled_while_they_pay_and_kept_where_they_stop_paying():
    ramp = ConnectionRamp(start=1, most=16)
    seen = drive(ramp, lambda n: min(n, 4) * 200 * MB)  # fast connections, but the CPU gives out at four
    assert seen[-1] == 4 and ramp.frozen


def test_a_frozen_count_is_probed_again_when_the_rate_falls_well_below():
    ramp = ConnectionRamp(start=1, most=8)
    drive(ramp, lambda n: 1100 * MB, seconds=1.0)
    assert ramp.frozen and ramp.limit == 1
    now, total = 1.0, 10**12
    ramp.observe(now, total, 1)
    for _ in range(20):  # the same server now caps each connection at 40 MB/s
        now += 0.05
        total += int(ramp.limit * 40 * MB * 0.05)
        ramp.observe(now, total, ramp.limit)
    assert ramp.limit == 8 and not ramp.frozen


def test_a_burst_that_ends_is_not_taken_for_a_cpu_limit():
    # the server lets the start of each response through fast, then caps it at 40 MB/s per connection
    ramp = ConnectionRamp(start=1, most=8)
    ramp.observe(0.0, 1, 1)
    ramp.observe(0.05, 1 + 15 * MB, 1)  # 300 MB/s: one connection in its burst
    assert ramp.limit == 2  # asked for more, to be judged
    total, now = 1 + 15 * MB, 0.05
    for _ in range(40):
        now += 0.05
        total += int(ramp.limit * 40 * MB * 0.05)  # the burst is over: every connection capped
        ramp.observe(now, total, ramp.limit)
    assert ramp.limit == 8 and not ramp.frozen


def test_a_slow_link_is_never_judged():
    ramp = ConnectionRamp(start=2, most=8)
    seen = drive(ramp, lambda n: 10 * MB)  # one shared 80 Mbit/s line: more connections add nothing, cost nothing
    assert seen[-1] == 8 and not ramp.frozen


def test_nothing_is_added_while_the_allowed_connections_are_not_all_busy():
    ramp = ConnectionRamp(start=2, most=8)
    for i in range(20):
        assert ramp.observe(i * 0.1, 1 + i * 4 * MB, busy=1) == 2  # one piece left: nothing to give more connections


def test_the_first_rate_is_taken_from_the_first_byte_on():
    ramp = ConnectionRamp(start=1, most=8)
    for i in range(10):  # 0.5 s of connecting and asking: no bytes, no decision
        assert ramp.observe(i * 0.05, 0, busy=1) == 1
    ramp.observe(0.5, 1, busy=1)
    ramp.observe(0.55, 1 + 60 * MB, busy=1)
    (rate, limit), = ramp.history
    assert abs(rate - 1200 * MB) < MB  # 60 MB in the 50 ms since the first byte
    assert limit == 2  # fast: two connections are tried (and judged)


def test_the_limit_stays_within_bounds():
    assert ConnectionRamp(start=0, most=8).limit == 1
    assert ConnectionRamp(start=16, most=4).limit == 4
    ramp = ConnectionRamp(start=3, most=3)
    assert set(drive(ramp, lambda n: n * MB)) == {3}
