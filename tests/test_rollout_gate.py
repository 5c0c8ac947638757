"""Unit tests of tools/rollout/gate.py: the health gate against a tiny HTTP server on 127.0.0.1."""

from __future__ import annotations

import socket

from rollout_fakes import (
    LOCAL,
    gate_settings,
    server_fixture,  # noqa: F401 (the fixture `server`)
)

from tools.rollout.gate import health_gate

# --- Health gate against a real HTTP server ---------------------------------------------------


def test_health_gate_passes_when_both_checks_answer_200(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    result = health_gate(LOCAL, gate_settings(port))
    assert result.ok
    assert result.attempts == 1


def test_health_gate_fails_naming_the_url_and_status(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [502]}
    result = health_gate(LOCAL, gate_settings(port))
    assert not result.ok
    assert result.attempts == 3
    assert result.details == (f"GET http://127.0.0.1:{port}/readyz answered 502, expected 200",)
    assert handler.calls["/readyz"] == 3


def test_health_gate_waits_for_a_host_that_becomes_healthy(server):
    port, handler = server
    handler.script = {"/healthz": [503, 503, 200], "/readyz": [200]}
    result = health_gate(LOCAL, gate_settings(port, health_attempts=5))
    assert result.ok
    assert result.attempts == 3


def test_health_gate_sends_the_configured_host_header(server):
    port, handler = server
    handler.script = {"/healthz": [200], "/readyz": [200]}
    result = health_gate(LOCAL, gate_settings(port, health_host="shop.example.com"))
    assert result.ok
    assert handler.hosts == ["shop.example.com", "shop.example.com"]


def test_health_gate_does_not_follow_redirects(server):
    port, handler = server
    handler.script = {"/healthz": [301], "/readyz": [200]}
    result = health_gate(LOCAL, gate_settings(port, health_attempts=1))
    assert not result.ok
    assert "answered 301, expected 200" in result.details[0]


def test_health_gate_times_out_on_a_silent_server(server):
    port, handler = server
    handler.script = {"/healthz": [0], "/readyz": [200]}
    result = health_gate(LOCAL, gate_settings(port, health_attempts=1, health_timeout=0.2))
    assert not result.ok
    assert result.details == (f"GET http://127.0.0.1:{port}/healthz: no answer within 0.2 s",)


def test_health_gate_fails_when_nothing_listens():
    with socket.socket() as s:  # a port that was free a moment ago and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = health_gate(LOCAL, gate_settings(port, health_attempts=2))
    assert not result.ok
    assert all("refused" in d.lower() for d in result.details)
