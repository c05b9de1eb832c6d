"""SIGINT/SIGTERM inside a training command: the first asks for a stop, a second Ctrl-C interrupts at once."""

import os
import signal
import time

import pytest

from tppeft.engine.signals import RunInterrupted, check_stop, graceful_stop, stop_requested


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.05)  # Python runs the handler between bytecodes of the main thread


def test_first_signal_requests_a_stop_and_a_second_ctrl_c_interrupts():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    messages = []
    with graceful_stop(messages.append):
        check_stop()  # nothing requested yet
        _deliver(signal.SIGTERM)
        assert stop_requested() and "SIGTERM received" in messages[0]
        with pytest.raises(RunInterrupted) as info:
            check_stop()
        assert info.value.signum == signal.SIGTERM and "SIGTERM" in str(info.value)
        with pytest.raises(KeyboardInterrupt):
            _deliver(signal.SIGINT)
    assert not stop_requested()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
