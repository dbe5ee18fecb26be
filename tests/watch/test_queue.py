"""The queue of changes: coalescing, the quiet period, the latency bound, storms, retries
with back-off, and flush markers. Pure bookkeeping: times are given, nothing sleeps."""

from __future__ import annotations

from coderag.watch.queue import (
    MAX_LATENCY_S,
    RETRY_MAX_S,
    RETRY_MIN_S,
    STORM_PATHS,
    ChangeQueue,
)


def test_a_batch_is_due_after_a_quiet_period():
    q = ChangeQueue(debounce=0.2)
    assert q.due_in(0.0) is None and not q.busy and q.size() == 0
    q.add("a.py", 10.0)
    assert abs(q.due_in(10.0) - 0.2) < 1e-9
    q.add("b.py", 10.1)  # another change restarts the quiet period
    assert abs(q.due_in(10.1) - 0.2) < 1e-9
    assert q.touch("a.py", 10.15)  # an event for a path already waiting: quiet period again
    assert not q.touch("c.py", 10.15)
    assert q.size() == 2 and q.seq == 2
    assert q.due_in(10.35) <= 0
    paths, seq = q.take()
    assert paths == {"a.py", "b.py"} and seq == 2
    assert not q.busy and q.due_in(10.4) is None


def test_a_busy_tree_still_gets_a_batch_within_the_latency_bound():
    q = ChangeQueue(debounce=1.0)
    q.add("x.py", 0.0)
    t = 0.0
    while t < MAX_LATENCY_S - 0.5:  # a change every half second: never quiet
        t += 0.5
        q.add(f"f{t}.py", t)
    assert q.due_in(MAX_LATENCY_S) <= 0


def test_urgent_skips_the_quiet_period_and_a_full_reconcile_counts_as_one():
    q = ChangeQueue(debounce=5.0)
    q.add(None, 0.0)
    assert q.size() == 1 and q.full
    q.urgent = True
    assert q.due_in(0.0) == 0.0
    assert q.take() == (None, 1)
    assert not q.urgent


def test_a_storm_becomes_a_full_reconcile():
    q = ChangeQueue(debounce=0.0)
    for i in range(STORM_PATHS + 1):
        q.add(f"gen/{i}.py", 0.0)
    paths, seq = q.take()
    assert paths is None and seq == STORM_PATHS + 1


def test_a_failed_batch_comes_back_after_a_back_off_that_doubles():
    q = ChangeQueue(debounce=0.0)
    q.add("a.py", 0.0)
    paths, seq = q.take()
    q.retry(paths, 1.0)
    assert q.pending == {"a.py"} and q.seq == seq  # not a new change
    assert q.due_in(1.0) == RETRY_MIN_S
    q.take()
    q.retry(None, 2.0)
    assert q.full and q.due_in(2.0) == 2 * RETRY_MIN_S
    for _ in range(20):
        q.retry(None, 3.0)
    assert q.due_in(3.0) == RETRY_MAX_S
    q.done(seq)  # a success resets the back-off
    assert q.applied == seq
    q.take()
    q.retry({"b.py"}, 4.0)
    assert q.due_in(4.0) == RETRY_MIN_S


def test_flush_markers_note_the_change_count_when_their_event_comes():
    q = ChangeQueue(debounce=0.2)
    token = q.new_marker()
    assert token != q.new_marker()  # unique per call
    q.add("a.py", 0.0)
    assert q.marker_seq(token) is None
    assert q.marker_seen(token) and q.marker_seq(token) == 1
    q.add("b.py", 0.1)
    assert not q.marker_seen(token)  # the first event counts
    assert q.marker_seq(token) == 1
    assert not q.marker_seen("watch-flush-not-ours")
    q.drop_marker(token)
    assert q.marker_seq(token) is None
