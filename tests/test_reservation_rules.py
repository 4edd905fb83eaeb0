"""The reservation rules: pure functions, checked case by case and by property."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hivetui.model import GpuProcess, GpuSample, HostSnapshot, HostStatus
from hivetui.reservations import (
    Conflict,
    FreeSlot,
    GpuRef,
    InvalidTimes,
    LimitExceeded,
    Limits,
    NotAllowed,
    Reservation,
    check_change,
    check_edit,
    check_new,
    cuda_visible_devices,
    find_free,
    first_conflict,
    gpus_in_use,
    holders_at,
    in_use_note,
    overlaps,
    utc,
)

T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)
M = timedelta(minutes=1)
LIMITS = Limits(max_hours=24, max_days_ahead=7)

A = [GpuRef("a", i, f"GPU-a{i}") for i in range(4)]
B = [GpuRef("b", i, f"GPU-b{i}") for i in range(2)]


def res(
    rid: int, gpu: GpuRef, start: datetime, end: datetime, user: str = "alice", title: str = ""
) -> Reservation:
    return Reservation(rid, user, gpu, start, end, title, T0 - 24 * H)


# -- intervals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 2), (1, 3), True),
        ((1, 3), (0, 2), True),
        ((0, 4), (1, 2), True),  # containment
        ((1, 2), (0, 4), True),
        ((0, 2), (0, 2), True),
        ((0, 2), (2, 4), False),  # back to back: half-open
        ((2, 4), (0, 2), False),
        ((0, 1), (3, 4), False),
    ],
)
def test_overlaps_is_half_open(a: tuple[int, int], b: tuple[int, int], expected: bool) -> None:
    assert overlaps(T0 + a[0] * H, T0 + a[1] * H, T0 + b[0] * H, T0 + b[1] * H) is expected
    r = res(1, A[0], T0 + a[0] * H, T0 + a[1] * H)
    assert r.overlaps(T0 + b[0] * H, T0 + b[1] * H) is expected


def test_active_at_and_holders() -> None:
    r1 = res(1, A[0], T0, T0 + 2 * H)
    r2 = res(2, A[1], T0 + 2 * H, T0 + 3 * H, user="bob")
    assert r1.active_at(T0) and not r1.active_at(T0 + 2 * H)
    assert holders_at([r1, r2], T0 + H) == {"GPU-a0": r1}
    assert holders_at([r1, r2], T0 + 2 * H) == {"GPU-a1": r2}
    assert holders_at([r1, r2], T0 - M) == {}


def test_utc_normalises() -> None:
    naive = datetime(2026, 1, 1, 12, 0, 0, 999_999)
    assert utc(naive) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    offset = datetime.fromisoformat("2026-01-01T12:00:00.5+02:00")
    assert utc(offset) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    assert utc(offset).tzinfo is UTC


def test_first_conflict_matches_gpu_time_and_ignores_one_id() -> None:
    r1 = res(1, A[0], T0, T0 + 2 * H)
    r2 = res(2, A[1], T0, T0 + 2 * H)
    assert first_conflict([r1, r2], "GPU-a0", T0 + H, T0 + 3 * H) is r1
    assert first_conflict([r1, r2], "GPU-a0", T0 + 2 * H, T0 + 3 * H) is None
    assert first_conflict([r1, r2], "GPU-a2", T0, T0 + H) is None
    assert first_conflict([r1, r2], "GPU-a0", T0, T0 + H, ignore_id=1) is None


# -- check_new -----------------------------------------------------------------


def test_check_new_accepts_ordinary_bookings() -> None:
    check_new(T0 + H, T0 + 3 * H, T0, LIMITS)
    check_new(T0, T0 + 24 * H, T0, LIMITS)  # exactly the longest
    check_new(T0 + 7 * 24 * H, T0 + 8 * 24 * H, T0, LIMITS)  # exactly the farthest
    check_new(T0 - 5 * M, T0 + H, T0, LIMITS)  # a few minutes of grace for "now"


@pytest.mark.parametrize(
    ("start", "end", "error", "message"),
    [
        (T0 + 2 * H, T0 + H, InvalidTimes, "must come after the start"),
        (T0 + H, T0 + H, InvalidTimes, "must come after the start"),
        (T0 - 3 * H, T0 - H, InvalidTimes, "would end in the past"),
        (T0 - 3 * H, T0, InvalidTimes, "would end in the past"),
        (T0 - 6 * M, T0 + H, InvalidTimes, "the start is in the past"),
        (T0, T0 + 24 * H + M, LimitExceeded, "longest reservation allowed (24 h)"),
        (T0 + 7 * 24 * H + M, T0 + 8 * 24 * H, LimitExceeded, "more than 7 days ahead"),
    ],
)
def test_check_new_refuses(
    start: datetime, end: datetime, error: type[Exception], message: str
) -> None:
    with pytest.raises(error) as caught:
        check_new(start, end, T0, LIMITS)
    assert message in str(caught.value)


# -- check_change / check_edit -------------------------------------------------------


def test_check_change_owner_and_admins() -> None:
    r = res(7, A[0], T0 + H, T0 + 2 * H)
    check_change(r, "alice", [], T0)
    check_change(r, "carol", ["carol"], T0)
    with pytest.raises(NotAllowed, match="reservation 7 belongs to alice: only they or an admin"):
        check_change(r, "bob", ["carol"], T0)
    with pytest.raises(NotAllowed, match="reservation 7 has ended"):
        check_change(r, "alice", [], T0 + 2 * H)
    with pytest.raises(NotAllowed, match="has ended"):
        check_change(r, "carol", ["carol"], T0 + 3 * H)  # not even an admin
    check_change(r, "alice", [], T0 + 2 * H - M)  # running: may still be cut short


def test_check_edit_of_a_future_reservation_is_a_new_booking() -> None:
    r = res(3, A[0], T0 + H, T0 + 2 * H)
    check_edit(r, T0 + 2 * H, T0 + 5 * H, T0, LIMITS)
    check_edit(r, T0, T0 + H, T0, LIMITS)  # earlier, to now
    with pytest.raises(InvalidTimes, match="the end must come after the start"):
        check_edit(r, T0 + 3 * H, T0 + 2 * H, T0, LIMITS)
    with pytest.raises(LimitExceeded, match="longest"):
        check_edit(r, T0 + H, T0 + 26 * H, T0, LIMITS)
    with pytest.raises(LimitExceeded, match="days ahead"):
        check_edit(r, T0 + 10 * 24 * H, T0 + 10 * 24 * H + H, T0, LIMITS)
    with pytest.raises(InvalidTimes, match="the start is in the past"):
        check_edit(r, T0 - H, T0 + H, T0, LIMITS)


def test_check_edit_of_a_started_reservation_keeps_its_start() -> None:
    r = res(4, A[0], T0 - H, T0 + H)
    check_edit(r, r.start, T0 + 5 * H, T0, LIMITS)  # extend
    check_edit(r, r.start, T0 + M, T0, LIMITS)  # cut short
    with pytest.raises(NotAllowed, match="reservation 4 has started: only its end can move"):
        check_edit(r, T0, T0 + 5 * H, T0, LIMITS)
    with pytest.raises(InvalidTimes, match="the new end is in the past"):
        check_edit(r, r.start, T0 - M, T0, LIMITS)
    with pytest.raises(LimitExceeded, match=r"longest reservation allowed \(24 h\)"):
        check_edit(r, r.start, r.start + 25 * H, T0, LIMITS)
    # A booking older than max_days_ahead may still run: only its length counts.
    old = res(5, A[0], T0 - 20 * H, T0 + H)
    check_edit(old, old.start, T0 + 4 * H, T0, LIMITS)


def test_conflict_carries_its_holder() -> None:
    holder = res(9, A[0], T0, T0 + H)
    err = Conflict("taken", holder)
    assert err.holder is holder and str(err) == "taken"
    assert Conflict("raced").holder is None


def test_cuda_visible_devices_uses_uuids_in_order() -> None:
    rs = [res(1, A[2], T0, T0 + H), res(2, A[0], T0, T0 + H)]
    assert cuda_visible_devices(rs) == "CUDA_VISIBLE_DEVICES=GPU-a2,GPU-a0"
    assert cuda_visible_devices([]) == "CUDA_VISIBLE_DEVICES="


# -- find_free ---------------------------------------------------------------------


def test_find_free_now_when_nothing_is_booked() -> None:
    slot = find_free([], A + B, 2, 3 * H, T0)
    assert slot is not None
    assert (slot.host, slot.start, slot.end) == ("a", T0, T0 + 3 * H)
    assert slot.gpus == (A[0], A[1])


def test_find_free_waits_for_the_first_end_that_frees_enough() -> None:
    booked = [
        res(1, A[0], T0, T0 + 2 * H),
        res(2, A[1], T0, T0 + 2 * H),
        res(3, A[2], T0, T0 + 5 * H),
        res(4, A[3], T0 + 3 * H, T0 + 4 * H),
    ]
    slot = find_free(booked, A, 2, H, T0)
    assert slot is not None and (slot.start, slot.gpus) == (T0 + 2 * H, (A[0], A[1]))
    slot = find_free(booked, A, 4, H, T0)  # needs every GPU: after 5 h
    assert slot is not None and slot.start == T0 + 5 * H
    # 3 GPUs for 2 h: at 2 h, A3's booking at 3 h is in the way; at 4 h, A2 is busy until 5 h.
    slot = find_free(booked, A, 3, 2 * H, T0)
    assert slot is not None and slot.start == T0 + 4 * H and slot.gpus == (A[0], A[1], A[3])


def test_find_free_host_filter_ties_and_impossible_requests() -> None:
    booked = [res(1, A[0], T0, T0 + H)]
    slot = find_free(booked, A + B, 2, H, T0)
    assert slot is not None and slot.host == "a"  # ties go to the host listed first
    slot = find_free(booked, A + B, 1, H, T0, hosts=["b"])
    assert slot is not None and slot.host == "b" and slot.gpus == (B[0],)
    assert find_free(booked, A + B, 5, H, T0) is None  # no host has 5
    assert find_free(booked, A + B, 1, H, T0, hosts=["c"]) is None
    full = [res(i, g, T0, T0 + 40 * 24 * H) for i, g in enumerate(B)]
    assert find_free(full, B, 1, H, T0, horizon=timedelta(days=30)) is None
    with pytest.raises(InvalidTimes):
        find_free([], A, 0, H, T0)
    with pytest.raises(InvalidTimes):
        find_free([], A, 1, timedelta(0), T0)


def test_find_free_ignores_reservations_that_ended_before() -> None:
    booked = [res(1, A[0], T0 - 3 * H, T0 - H)]
    slot = find_free(booked, A[:1], 1, H, T0)
    assert slot is not None and slot.start == T0


def test_find_free_now_takes_idle_gpus_first() -> None:
    busy = {A[0].uuid, A[1].uuid, A[3].uuid}
    slot = find_free([], A, 1, H, T0, in_use=busy)
    assert slot is not None and slot.gpus == (A[2],) and slot.in_use == ()
    slot = find_free([], A, 2, H, T0, in_use=busy)  # one idle GPU: the rest must be busy ones
    assert slot is not None and slot.gpus == (A[0], A[2]) and slot.in_use == (A[0],)
    # A reserved idle GPU is not free: the busy unreserved ones are what is left.
    slot = find_free([res(1, A[2], T0, T0 + H)], A, 1, H, T0, in_use=busy)
    assert slot is not None and slot.gpus == (A[0],) and slot.in_use == (A[0],)


def test_find_free_now_prefers_the_host_with_idle_gpus() -> None:
    busy = {g.uuid for g in A}
    slot = find_free([], A + B, 1, H, T0, in_use=busy)
    assert slot is not None and slot.gpus == (B[0],) and slot.in_use == ()
    slot = find_free([], A + B, 2, H, T0, in_use=busy | {B[1].uuid})
    assert slot is not None and slot.host == "b" and slot.in_use == (B[1],)
    slot = find_free([], A + B, 3, H, T0, in_use=busy)  # only host a has three
    assert slot is not None and slot.host == "a" and slot.in_use == tuple(A[:3])


def test_find_free_uses_live_data_only_for_a_slot_that_starts_now() -> None:
    busy = {A[0].uuid, A[1].uuid}
    booked = [res(i + 1, g, T0, T0 + H) for i, g in enumerate(A)]
    slot = find_free(booked, A, 2, H, T0, in_use=busy)
    assert slot is not None and slot.start == T0 + H
    assert slot.gpus == (A[0], A[1]) and slot.in_use == ()  # later: index order, no claim


def _sample(index: int, util: float, mem: float, procs: int = 0) -> GpuSample:
    processes = tuple(GpuProcess(100 + i, "bob", 10.0, "train") for i in range(procs))
    return GpuSample(index, f"GPU-a{index}", "A10", util, mem, 1000.0, 30.0, 50.0, processes)


def test_gpus_in_use_reads_processes_load_and_memory() -> None:
    snap = HostSnapshot(
        "a",
        HostStatus.ONLINE,
        gpus=(_sample(0, 100, 900, 2), _sample(1, 0, 10), _sample(2, 0, 500), _sample(3, 0, 0, 1)),
    )
    reasons = gpus_in_use([snap])
    assert reasons == {
        "GPU-a0": "2 processes, 100 % busy, 90 % memory",
        "GPU-a2": "0 % busy, 50 % memory",
        "GPU-a3": "1 process, 0 % busy, 0 % memory",
    }
    slot = find_free([], A, 2, H, T0, in_use=reasons)
    assert slot is not None and slot.gpus == (A[0], A[1])
    note = in_use_note(slot, reasons)
    assert note == (
        "a:0 (2 processes, 100 % busy, 90 % memory) is in use right now, though not reserved "
        "(too few idle GPUs)"
    )
    assert in_use_note(find_free([], A, 1, H, T0, in_use=reasons) or slot, reasons) is None


# A grid of 15 minutes: every reservation edge lies on it, so if any start works,
# one on the grid does, and checking every grid point is an exhaustive search.
STEP = timedelta(minutes=15)
GPUS = [GpuRef(h, i, f"GPU-{h}{i}") for h in ("x", "y") for i in range(3)]
HORIZON = timedelta(days=1)


@st.composite
def bookings(draw: st.DrawFn) -> list[Reservation]:
    out: list[Reservation] = []
    for gpu in GPUS:
        at = draw(st.integers(-20, 10))
        for _ in range(draw(st.integers(0, 5))):
            at += draw(st.integers(0, 24))
            length = draw(st.integers(1, 40))
            out.append(res(len(out) + 1, gpu, T0 + at * STEP, T0 + (at + length) * STEP))
            at += length
    return out


def _fits(booked: list[Reservation], start: datetime, duration: timedelta, count: int) -> bool:
    return any(
        sum(
            1
            for g in GPUS
            if g.host == host and first_conflict(booked, g.uuid, start, start + duration) is None
        )
        >= count
        for host in ("x", "y")
    )


@settings(max_examples=300, deadline=None)
@given(
    booked=bookings(),
    count=st.integers(1, 3),
    steps=st.integers(1, 60),
    after_steps=st.integers(0, 8),
    offset=st.integers(0, 14),  # ``after`` off the grid by a few minutes
)
def test_find_free_is_the_earliest_slot_that_overlaps_nothing(
    booked: list[Reservation], count: int, steps: int, after_steps: int, offset: int
) -> None:
    duration = steps * STEP
    after = T0 + after_steps * STEP + offset * M
    slot = find_free(booked, GPUS, count, duration, after, horizon=HORIZON)
    # Candidate starts: ``after`` itself, then every grid point after it.
    first_grid = T0 + (after_steps + (1 if offset else 0)) * STEP
    candidates = [after] + [first_grid + k * STEP for k in range(int(HORIZON / STEP) + 1)]
    candidates = [c for c in candidates if c - after <= HORIZON]
    if slot is None:
        assert not any(_fits(booked, c, duration, count) for c in candidates)
        return
    assert slot.start >= after and slot.end == slot.start + duration
    assert len(slot.gpus) == count and {g.host for g in slot.gpus} == {slot.host}
    for gpu in slot.gpus:
        assert all(not r.overlaps(slot.start, slot.end) for r in booked if r.gpu == gpu)
    for earlier in (c for c in candidates if c < slot.start):
        assert not _fits(booked, earlier, duration, count), earlier
    if slot.host == "y":  # ties go to the first host
        x_free = [
            g
            for g in GPUS
            if g.host == "x" and first_conflict(booked, g.uuid, slot.start, slot.end) is None
        ]
        assert len(x_free) < count


@settings(max_examples=200, deadline=None)
@given(
    booked=bookings(),
    count=st.integers(1, 3),
    steps=st.integers(1, 20),
    busy=st.sets(st.sampled_from([g.uuid for g in GPUS])),
)
def test_find_free_with_live_data_is_as_early_and_takes_the_fewest_busy_gpus(
    booked: list[Reservation], count: int, steps: int, busy: set[str]
) -> None:
    duration = steps * STEP
    plain = find_free(booked, GPUS, count, duration, T0, horizon=HORIZON)
    live = find_free(booked, GPUS, count, duration, T0, horizon=HORIZON, in_use=busy)
    if plain is None:
        assert live is None
        return
    assert live is not None and live.start == plain.start  # idle-first never waits longer
    taken_busy = {g.uuid for g in live.gpus} & busy if live.start == T0 else set()
    assert {g.uuid for g in live.in_use} == taken_busy
    if live.start != T0:
        assert live == plain
        return
    fewest = min(
        max(0, count - sum(1 for g in free if g.uuid not in busy))
        for host in ("x", "y")
        if len(free := [g for g in GPUS if g.host == host and _fits_gpu(booked, g, live)]) >= count
    )
    assert len(live.in_use) == fewest


def _fits_gpu(booked: list[Reservation], gpu: GpuRef, slot: FreeSlot) -> bool:
    return first_conflict(booked, gpu.uuid, slot.start, slot.end) is None
