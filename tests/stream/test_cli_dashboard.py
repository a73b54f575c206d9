"""`pulse dashboard`: listens on 127.0.0.1 unless --host says otherwise, and prints a sign-in token it made up."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from pulse_testkit import free_ports, pulse


def _outward_ip() -> str | None:
    """This machine's address on its default route (no packet is sent), if it has one besides loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") else ip


def _healthy(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/_stcore/health", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _serve(redis_url: str, prefix: str, *args: str, env: dict[str, str] | None = None
           ) -> tuple[subprocess.Popen[str], int]:
    [port] = free_ports()
    full_env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=prefix)
    full_env.pop("PULSE_DASHBOARD_TOKEN", None)
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli", "dashboard", "--port", str(port), *args],
                            env=full_env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _healthy("127.0.0.1", port):
        if proc.poll() is not None:
            pytest.fail(f"pulse dashboard exited: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.3)
    return proc, port


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def test_dashboard_binds_loopback_and_prints_a_made_up_token(redis_url: str, key_prefix: str) -> None:
    proc, port = _serve(redis_url, key_prefix)
    try:
        assert _healthy("127.0.0.1", port)
        outward = _outward_ip()
        if outward is not None:
            assert not _healthy(outward, port), f"reachable on {outward}: should listen on 127.0.0.1 only"
    finally:
        err = _stop(proc)
    token = re.search(r"sign in to act with the token (\S+)", err)
    assert token and len(token.group(1)) >= 20, err
    assert f"http://localhost:{port}" in err


def test_host_flag_opens_other_interfaces(redis_url: str, key_prefix: str) -> None:
    outward = _outward_ip()
    if outward is None:
        pytest.skip("no address besides loopback on this machine")
    proc, port = _serve(redis_url, key_prefix, "--host", "0.0.0.0", env={"PULSE_DASHBOARD_TOKEN": "a-chosen-token-42"})
    try:
        assert _healthy(outward, port)
    finally:
        err = _stop(proc)
    assert "listening on 0.0.0.0" in err and "a-chosen-token-42" not in err


def test_help_and_bad_token(redis_url: str, key_prefix: str) -> None:
    out = pulse("dashboard", "--help", redis_url=redis_url, prefix=key_prefix).stdout
    assert "--host" in out and "--wall" in out and "127.0.0.1" in out
    proc = pulse("dashboard", "--port", str(free_ports()[0]), redis_url=redis_url, prefix=key_prefix, check=False,
                 extra_env={"PULSE_DASHBOARD_TOKEN": "short"}, timeout=60)
    assert proc.returncode == 2 and "PULSE_DASHBOARD_TOKEN: use at least 12 characters" in proc.stderr


def test_demo_with_the_alert_port_taken_says_so_and_leaves_no_dashboard_behind(redis_url: str, key_prefix: str) -> None:
    dash_port, alerts_port = free_ports(2)
    taken = socket.socket()
    taken.bind(("127.0.0.1", alerts_port))
    taken.listen()
    try:
        env = dict(os.environ, REDIS_URL=redis_url, PULSE_ALERTS_PORT=str(alerts_port))
        env.pop("PULSE_PREFIX", None)
        proc = subprocess.run([sys.executable, "-m", "stream.cli", "demo", "--port", str(dash_port), "--prefix",
                               key_prefix, "--rate", "50"], env=env, capture_output=True, text=True, timeout=120,
                              cwd=Path(__file__).resolve().parents[2])
    finally:
        taken.close()
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("pulse: error:")]
    assert len(errors) == 1 and f"cannot listen on 127.0.0.1:{alerts_port}" in errors[0], proc.stderr
    assert "PULSE_ALERTS_PORT" in errors[0] and "Traceback" not in proc.stderr
    time.sleep(1)
    assert not _healthy("127.0.0.1", dash_port), "the demo's dashboard outlived the demo"
