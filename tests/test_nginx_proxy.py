"""tasks/nginx_proxy.py, the pure parts: when nginx's running configuration is older than its
file (drift), read from the workers' start times. Fast unit tests; on the lab:
tests/test_drift_lab.py."""

from __future__ import annotations

import pytest

from tasks.nginx_proxy import LoadTimes, NginxLoaded


@pytest.mark.parametrize(
    ("loaded", "changed", "stale"),
    [
        (100.5, 100.0, False),  # reloaded after the file changed
        (100.0, 100.01, False),  # within the clocks' resolution
        (100.0, 101.0, True),  # file changed after the last (re)load: not live
        (None, 101.0, False),  # nginx not running: the service operation starts it
        (100.0, None, False),  # no file yet
    ],
)
def test_nginx_is_stale_only_when_its_workers_are_older_than_its_file(loaded, changed, stale):
    line = LoadTimes(loaded, changed).drift("/etc/nginx/nginx.conf")
    assert (line is not None) is stale
    if stale:
        assert line.startswith("running configuration older than /etc/nginx/nginx.conf")


def test_nginx_load_time_places_worker_ticks_on_the_wall_clock():
    # now 1000.0 s, up 500.0 s => booted at 500.0; a worker started 250 s (25,000 ticks) after.
    times = NginxLoaded().process(["1000.0 500.0 100 800.25", "20000", "25000"])
    assert times == LoadTimes(750.0, 800.25)
    assert NginxLoaded().process(["1000.0 500.0 100 -"]) == LoadTimes(None, None)
