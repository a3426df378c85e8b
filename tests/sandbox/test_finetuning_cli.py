"""`ftconnect sandbox` / `python -m connector.sandbox`: options, banner, clean shutdown."""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from connector.sandbox import cli

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure_parser(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    args = parse()
    assert (args.host, args.port, args.seed) == ("127.0.0.1", 8787, 1)
    assert (args.delay, args.failure_rate, args.strict_webhooks, args.rate_window) == (
        None,
        0.0,
        False,
        60.0,
    )
    config = cli.build_config(args)
    assert (config.pending_delay, config.processing_delay) == (1.0, 3.0)


def test_options_shape_the_config() -> None:
    args = parse(
        "--seed", "9", "--delay", "0.5", "--failure-rate", "0.25", "--strict-webhooks",
        "--rate-window", "5",
    )  # fmt: skip
    config = cli.build_config(args)
    assert (config.seed, config.failure_rate, config.strict_webhooks) == (9, 0.25, True)
    assert (config.pending_delay, config.processing_delay, config.rate_window) == (1.0, 0.5, 5.0)
    both = cli.build_config(parse("--delay", "0,2"))
    assert (both.pending_delay, both.processing_delay) == (0.0, 2.0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--failure-rate", "1.5"], "must be a number between 0 and 1"),
        (["--failure-rate", "lots"], "must be a number between 0 and 1"),
        (["--delay", "-1"], "must be a finite number of seconds"),
        (["--delay", "1,2,3"], "use SECONDS or PENDING,PROCESSING"),
        (["--rate-window", "0"], "greater than 0"),
        (["--port", "70000"], "must be a port number"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        parse(*argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_importing_the_cli_does_not_import_aiohttp() -> None:
    code = "import sys, connector.sandbox.cli; print('aiohttp' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_serves_prints_credentials_and_stops_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "connector.sandbox", "--port", "0", "--delay", "0,0", "--seed", "4"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C" in line:
                break
        banner = "".join(lines)
        url = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner)
        key = re.search(r"API key \(Demo User, pro\): (ft_live_[0-9a-f]{32})", banner)
        assert url, banner
        assert key, banner
        assert f"TemPolor base URL: {url[1]}/v1/tempolor" in banner
        assert re.search(r"TemPolor token: user:\S+", banner)
        assert f'curl -s {url[1]}/v1/me -H "X-API-Key: {key[1]}"' in banner
        request = urllib.request.Request(f"{url[1]}/v1/me", headers={"X-API-Key": key[1]})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.load(response)["data"]["name"] == "Demo User"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stderr is not None
        assert "stopped" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_a_busy_port_exits_1() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "connector.sandbox", "--port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=15,
        )
    assert out.returncode == 1
    assert "cannot listen" in out.stderr
