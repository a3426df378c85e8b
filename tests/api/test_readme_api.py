"""The README's "HTTP API" section, run as written against a started connector.

Each example of the section is marked `<!-- api-example: NAME -->` right above
it (invisible once rendered), and is read from the README here, not copied:

- `config`: the `api:` block, written as the automations file, its `!secret`
  tokens in a `secrets.yaml` beside it (made here). Its `listen` port is
  swapped for port 0 on the loaded config, as `ftconnect run` cannot be told;
  every example's `host:port` is pointed at the bound port instead.
- `curl`: run by the real `curl` binary through bash, `$FTCONNECT_TOKEN` set to
  a token of the block, as in a terminal. Without curl on the machine the
  request parsed from the command is sent with aiohttp instead; the parse is
  checked either way, so the README keeps promising the same request.
- `n8n`: the HTTP Request node's settings table, turned into the request the
  node sends (its expressions filled with an execution id and item index).
- `home-assistant`, `home-assistant-secrets`, `home-assistant-automation`:
  the `rest_command` with its `!secret` from Home Assistant's secrets, its
  payload rendered by Jinja2 in a sandboxed environment with the automation's
  `data`, as Home Assistant renders a simple template.

No key anywhere: the connector runs on an embedded sandbox (a fast one here),
as `ftconnect run` does.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML ships no type hints
from jinja2.sandbox import ImmutableSandboxedEnvironment

from connector.app import Connector, open_connector
from connector.automation.loader import load_config
from connector.sandbox import SandboxConfig

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
MARKER = re.compile(r"^<!-- api-example: ([a-z0-9-]+) -->\n", re.MULTILINE)
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)
PLACEHOLDER = re.compile(r"<the (\w+) token>")
ACCOUNT = "Demo User"  # the sandbox account the connector's key belongs to
# Tracks end in a fraction of a second; rate limits out of the way.
FAST = SandboxConfig(
    pending_delay=0.05,
    processing_delay=0.2,
    read_limit=100_000,
    generation_limit=1_000,
    max_in_progress=1_000,
)


def examples() -> dict[str, str]:
    """Every marked example of the README: a fenced block's text, or a table's lines."""
    text = README.read_text(encoding="utf-8")
    found: dict[str, str] = {}
    for match in MARKER.finditer(text):
        name, rest = match.group(1), text[match.end() :]
        assert name not in found, f"README: two examples marked {name!r}"
        fence = FENCE.match(rest)
        if fence is not None:
            found[name] = fence.group(2)
            continue
        lines = []
        for line in rest.splitlines():
            if not line.startswith("|"):
                break
            lines.append(line)
        assert lines, f"README: the example marked {name!r} is neither a block nor a table"
        found[name] = "\n".join(lines)
    return found


@dataclass
class Running:
    connector: Connector
    tokens: dict[str, str]  # token name -> token
    written: str  # the host:port the README's examples name
    bound: str  # where the API listens in this test
    home: Path

    def point(self, example: str) -> str:
        """The example aimed at this test's listener."""
        assert self.written in example, f"the example does not call {self.written}:\n{example}"
        return example.replace(self.written, self.bound)

    def fill(self, text: str) -> str:
        """`<the NAME token>` replaced by that token of the README's `api:` block."""
        return PLACEHOLDER.sub(lambda m: self.tokens[m.group(1)], text)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """The README's `api:` block as the file, on an embedded sandbox, started."""
    block = examples()["config"]
    (tmp_path / "automations.yaml").write_text(block, encoding="utf-8")
    names = re.findall(r"!secret (\w+)", block)
    assert names, "the README's api: block reads its tokens with !secret"
    made = {name: secrets.token_urlsafe(32) for name in names}
    (tmp_path / "secrets.yaml").write_text(yaml.safe_dump(made), encoding="utf-8")
    config = load_config(tmp_path / "automations.yaml")
    assert config.api is not None
    assert config.api.host == "127.0.0.1", "the README promises loopback"
    written = f"{config.api.host}:{config.api.port}"
    tokens = {token.name: token.token for token in config.api.tokens}
    config = dataclasses.replace(config, api=dataclasses.replace(config.api, port=0))
    async with open_connector(config, sandbox=FAST) as connector:
        await connector.start()
        assert connector.api is not None
        bound = f"{connector.api.host}:{connector.api.port}"
        yield Running(connector, tokens, written, bound, tmp_path)


def _credits_spent(running: Running, prompt: str) -> int:
    handle = running.connector.sandbox
    assert handle is not None
    return sum(1 for g in handle.sandbox.generations(ACCOUNT) if g.prompt == prompt)


def _finished_track(answer: dict[str, Any], tags: str) -> dict[str, Any]:
    """The generation of a finished `generate` run, checked."""
    run = answer["run"]
    assert run["automation"] == "api.generate"
    assert run["status"] == "succeeded", run
    (step,) = run["steps"]
    assert step["options"]["tags"] == tags
    generation: dict[str, Any] = step["output"]["generation"]
    assert generation["status"] == "completed"
    assert generation["audioUrl"]
    return generation


# -- curl ----------------------------------------------------------------------------------


@dataclass
class CurlRequest:
    method: str
    url: str
    headers: dict[str, str]
    body: str | None


def _expand(text: str, environ: dict[str, str]) -> str:
    """`$NAME` as the shell expands it inside double quotes (the README's one use)."""
    return re.sub(r"\$(\w+)", lambda m: environ[m.group(1)], text)


def parse_curl(command: str, environ: dict[str, str]) -> CurlRequest:
    """The request a curl command line sends (the options the README uses)."""
    words = shlex.split(command.replace("\\\n", " "))
    assert words[0] == "curl", command
    method, url, body = "", "", None
    headers: dict[str, str] = {}
    args = iter(words[1:])
    for word in args:
        if word in ("-H", "--header"):
            name, _, value = next(args).partition(":")
            headers[name.strip()] = _expand(value.strip(), environ)
        elif word in ("-d", "--data", "--data-raw"):
            body = next(args)
        elif word in ("-X", "--request"):
            method = next(args)
        elif word in ("-sS", "-s", "-S", "--silent", "--show-error"):
            continue
        else:
            assert not word.startswith("-"), f"an option this test does not know: {word}"
            url = word
    return CurlRequest(method or ("POST" if body is not None else "GET"), url, headers, body)


async def _curl(running: Running, command: str, env: dict[str, str], n: int) -> tuple[Any, str]:
    """The README's command, by the real curl when there is one: (JSON answer, headers)."""
    dumped = running.home / f"headers-{n}.txt"
    if shutil.which("curl") is not None:
        # Only where curl writes the answer's headers is added; the request is as written.
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f"{command} --dump-header {shlex.quote(str(dumped))}",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 90)
        assert process.returncode == 0, err.decode()
        return json.loads(out), dumped.read_text(encoding="latin-1")
    request = parse_curl(command, env)
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            request.method, request.url, headers=request.headers, data=request.body
        ) as response,
    ):
        lines = [f"HTTP/1.1 {response.status}"]
        lines += [f"{name}: {value}" for name, value in response.headers.items()]
        return json.loads(await response.read()), "\r\n".join(lines)


def _status_and_headers(dumped: str) -> tuple[int, dict[str, str]]:
    first, *rest = [line for line in dumped.splitlines() if line.strip()]
    headers = {}
    for line in rest:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(first.split()[1]), headers


async def test_the_curl_command_generates_a_track_and_a_retry_spends_nothing(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    command = running.point(examples()["curl"]).strip()
    token = running.tokens["n8n"]
    env = {**os.environ, "FTCONNECT_TOKEN": token}

    # What the command sends, read from it: the README's promise, whatever runs it.
    request = parse_curl(command, env)
    assert request.method == "POST"
    assert urlsplit(request.url).path == "/api/v1/actions/generate"
    assert parse_qs(urlsplit(request.url).query) == {"wait": ["60"]}
    assert request.headers["Authorization"] == f"Bearer {token}"
    assert request.headers["Content-Type"] == "application/json"
    key = request.headers["Idempotency-Key"]
    assert request.body is not None
    options = json.loads(request.body)
    assert options["wait"] is True

    first, dumped = await _curl(running, command, env, 1)
    status, headers = _status_and_headers(dumped)
    assert status == 200
    track = _finished_track(first, options["tags"])
    assert headers["location"] == f"/api/v1/runs/{first['run']['id']}"
    assert "idempotent-replayed" not in headers

    again, dumped = await _curl(running, command, env, 2)
    status, headers = _status_and_headers(dumped)
    assert status == 200
    assert headers["idempotent-replayed"] == "true"
    assert again["run"]["id"] == first["run"]["id"]
    assert _finished_track(again, options["tags"])["id"] == track["id"]
    assert _credits_spent(running, options["tags"]) == 1

    # The same key with other options: refused, nothing started.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            request.url.split("?")[0],
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
            json={**options, "duration": 30},
        ) as response,
    ):
        assert response.status == 422
        assert (await response.json())["error"]["code"] == "idempotency_key_reused"
    assert _credits_spent(running, options["tags"]) == 1
    assert token not in caplog.text


# -- n8n -----------------------------------------------------------------------------------


def _table(text: str) -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in text.splitlines()[2:]:  # past the header and its rule
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        assert len(cells) == 2, line
        rows[cells[0]] = cells[1]
    return rows


def _code(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


def n8n_request(settings: dict[str, str], running: Running) -> dict[str, Any]:
    """The request an HTTP Request node with these settings sends, for item 0 of
    execution 231 (what its `{{ }}` expressions are filled with)."""
    (method,) = _code(settings["Method"])
    (url,) = _code(settings["URL"])
    auth = settings["Authentication"]
    assert "Generic Credential Type → Header Auth" in auth
    auth_name, auth_value = _code(auth)
    send_headers = settings["Send Headers"]
    assert send_headers.startswith("on")
    header_name, expression = _code(send_headers)
    rendered = expression.replace("{{ $execution.id }}", "231").replace("{{ $itemIndex }}", "0")
    assert "{{" not in rendered, f"an n8n expression this test does not fill: {expression}"
    body = settings["Send Body"]
    assert body.startswith("on")
    assert "Body Content Type JSON" in body
    assert "Specify Body Using JSON" in body
    (json_body,) = _code(body)
    timeout = _code(settings["Options → Timeout"])[0]
    return {
        "method": method,
        "url": running.point(url),
        "headers": {
            auth_name: running.fill(auth_value),
            header_name: rendered,
            "Content-Type": "application/json",  # n8n's, for a JSON body
        },
        "data": json.dumps(json.loads(json_body)),
        "timeout": aiohttp.ClientTimeout(total=int(timeout) / 1000),
    }


async def test_the_n8n_node_settings_generate_a_track_and_a_retry_gets_the_same_run(
    running: Running,
) -> None:
    request = n8n_request(_table(examples()["n8n"]), running)
    wait = float(parse_qs(urlsplit(request["url"]).query)["wait"][0])
    assert request["timeout"].total > wait, "the node must wait longer than the API does"
    tags = json.loads(request["data"])["tags"]
    async with aiohttp.ClientSession() as session:
        async with session.request(**request) as response:
            assert response.status == 200
            assert "Idempotent-Replayed" not in response.headers
            first = await response.json()
        track = _finished_track(first, tags)
        # Retry On Fail: the node sends the same request again.
        async with session.request(**request) as response:
            assert response.status == 200
            assert response.headers["Idempotent-Replayed"] == "true"
            again = await response.json()
    assert again["run"]["id"] == first["run"]["id"]
    assert _finished_track(again, tags)["id"] == track["id"]
    assert _credits_spent(running, tags) == 1


async def test_the_n8n_openapi_document_needs_no_token_and_types_each_action(
    running: Running,
) -> None:
    url = f"http://{running.bound}/api/v1/openapi.json"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    operation = document["paths"]["/api/v1/actions/generate"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]


# -- Home Assistant ------------------------------------------------------------------------


def _home_assistant_yaml(text: str, ha_secrets: dict[str, str]) -> Any:
    """YAML as Home Assistant reads it: `!secret NAME` from its secrets.yaml."""

    class Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML is untyped
        pass

    def secret(loader: yaml.SafeLoader, node: yaml.Node) -> str:
        assert isinstance(node, yaml.ScalarNode)
        return ha_secrets[loader.construct_scalar(node)]

    Loader.add_constructor("!secret", secret)
    return yaml.load(text, Loader=Loader)  # a SafeLoader, one tag more


async def test_the_home_assistant_rest_command_called_from_an_automation_starts_a_track(
    running: Running,
) -> None:
    found = examples()
    ha_secrets = yaml.safe_load(running.fill(found["home-assistant-secrets"]))
    configuration = _home_assistant_yaml(found["home-assistant"], ha_secrets)
    ((name, command),) = configuration["rest_command"].items()
    automation = yaml.safe_load(found["home-assistant-automation"])
    (call,) = [a for a in automation["actions"] if a["action"] == f"rest_command.{name}"]
    data = call["data"]

    # What Home Assistant does with the call: url, payload and headers are templates
    # rendered with the call's data; content_type is the Content-Type header.
    jinja = ImmutableSandboxedEnvironment()
    headers = {
        key: jinja.from_string(value).render(**data) for key, value in command["headers"].items()
    }
    headers["Content-Type"] = command["content_type"]
    payload = jinja.from_string(command["payload"]).render(**data)
    assert json.loads(payload) == {"tags": data["tags"], "duration": data["duration"]}
    url = running.point(jinja.from_string(command["url"]).render(**data))
    timeout = aiohttp.ClientTimeout(total=10)  # rest_command's default
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.request(command["method"], url, data=payload, headers=headers) as response,
    ):
        assert response.status == 202  # at once: the track is made after the answer
        answer = await response.json()
    assert answer["run"]["status"] == "running"
    run_id = answer["run"]["id"]
    assert await running.connector.runtime.wait_for_run(run_id, 30)
    row = running.connector.store.run(run_id)
    assert row is not None
    assert row.status == "succeeded"
    assert row.steps[0].options is not None
    assert row.steps[0].options["tags"] == data["tags"]
    assert row.steps[0].options["duration"] == data["duration"]
    assert _credits_spent(running, data["tags"]) == 1


# -- the reference bullets -----------------------------------------------------------------


async def test_errors_and_scopes_answer_as_the_reference_says(running: Running) -> None:
    base = f"http://{running.bound}/api/v1"
    act_only = {"Authorization": f"Bearer {running.tokens['home_assistant']}"}
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/actions/generate", headers=act_only, json={"tags": "x", "durration": 30}
        ) as response:
            assert response.status == 422
            error = (await response.json())["error"]
        assert set(error) == {"code", "message", "details"}
        assert error["code"] == "validation_failed"
        assert error["details"][0]["path"] == "durration"
        assert "did you mean 'duration'?" in error["details"][0]["message"]
        async with session.get(f"{base}/runs", headers=act_only) as response:
            assert response.status == 403
            error = (await response.json())["error"]
        assert error["code"] == "forbidden"
        assert "'read'" in error["message"]
        async with session.get(f"{base}/runs?limit=1") as response:
            assert response.status == 401
        async with session.get(f"{base}/health") as response:
            assert response.status == 200
