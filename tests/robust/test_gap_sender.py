"""The capture-gap report names who signalled the previous daemon, when the kernel saw it."""

from __future__ import annotations

import logging
import time

from spyderd.daemon import service


class Meta(dict):
    def get_meta(self, key):
        return self.get(key)

    def put_meta(self, key, value):
        self[key] = value


def test_gap_report_names_the_killer(caplog):
    caplog.set_level(logging.INFO, logger="spyderd")
    store = Meta()
    service.mark_running(store, time.time() - 5)  # a run that never stopped cleanly
    sender = {"sender_pid": 4242, "sender_tid": 4242, "sender_uid": 0, "sender_comm": "kill",
              "signal": 9, "call": "kill", "target": 77, "time": time.time_ns() - 10**9,
              "count": 1}
    gap = service.report_gap(store, time.time(), sender)
    assert gap is not None and not gap.clean
    assert gap.sender.startswith("SIGKILL by kill[4242] (uid 0) at ")
    rec = [r for r in caplog.records if getattr(r, "MESSAGE_ID", "") == service.MSG_GAP_UNCLEAN]
    assert rec and "was sent SIGKILL by kill[4242]" in rec[-1].getMessage()
    assert rec[-1].SPYDER_GAP_SIGNAL == "9" and rec[-1].SPYDER_GAP_SENDER_PID == "4242"
    assert store[service.META_LAST_GAP]["sender"] == gap.sender


def test_gap_report_without_a_sender_is_unchanged(caplog):
    store = Meta()
    service.mark_stopped(store, time.time() - 1)
    gap = service.report_gap(store, time.time(), None)
    assert gap is not None and gap.clean and gap.sender == ""
