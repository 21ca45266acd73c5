"""The INTERRUPT registry for async handlers, without a kernel."""

from __future__ import annotations

from concurrent.futures import Future

from shuntfs.interrupts import Cancellations


def test_an_interrupt_cancels_the_registered_future_and_one_that_comes_later():
    c = Cancellations()
    c.newest = 2000  # every request below was read
    running = Future()
    c.track(7, running)
    c.interrupt(7)
    assert running.cancelled()
    c.done(7)
    c.interrupt(9)  # before its handler started: remembered
    late = Future()
    c.track(9, late)
    assert late.cancelled()
    other = Future()
    c.track(10, other)
    c.interrupt(11)
    assert not other.cancelled()
    for unique in range(1000, 1400):  # old early interrupts are forgotten, not kept for ever
        c.interrupt(unique)
    assert len(c._early) == 256


def test_an_interrupt_for_a_request_not_read_yet_is_refused_and_not_remembered():
    c = Cancellations()
    c.newest = 10
    assert c.interrupt(10) and c.interrupted(10)
    assert not c.interrupt(12)  # newer than any read: the kernel is to send it again (EAGAIN)
    assert not c.interrupted(12)
