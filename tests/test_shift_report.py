"""tools/shift/report.py: the text report of a whole shift (fake load balancer and logs)."""

from __future__ import annotations

from shift_fakes import FakeElb, FakeFleet, fake_shift

from tools.shift.report import render_text


def test_report_text_has_both_groups_at_each_step(tmp_path):
    elb = FakeElb({"a": 100, "b": 0})
    run = fake_shift(tmp_path, elb, FakeFleet(elb, 0.9997), "--min-requests", "50")
    run.run()
    run.report.final_weights = elb.weights
    text = render_text(run.report)
    rows = [line for line in text.splitlines() if " new b " in line or " old " in line]
    assert len(rows) == 8
    assert "(baseline: step 50%)" in text
    assert "proxies: a: proxy-1, proxy-2; b: proxy-3" in text
