"""The `api:` section: the HTTP API's listener and its clients' tokens.

Every problem is reported with its path and line; the tokens are secrets however
they are written: no repr, problem or `ftconnect check` output shows one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ft_config_support import parse, problems

from connector.automation.model import ApiConfig, ApiToken, SecretValue
from connector.automation.problems import ConfigError
from connector.redaction import SECRETS, scrub_text

N8N = "n8n-0123456789abcdefghijklmnop"  # 29 characters
NODE_RED = "nodered-QWERTYUIOPASDFGHJKLZX"
MAKE_TOKEN = 'python3 -c "import secrets; print(secrets.token_urlsafe(32))"'


@pytest.fixture(autouse=True)
def _own_secrets() -> Iterator[None]:
    """Loading registers the file's secrets process-wide: leave the registry as found."""
    before = SECRETS.values()
    yield
    SECRETS.discard_all()
    SECRETS.update(before)


# -- valid sections ------------------------------------------------------------------------


def test_a_minimal_section_takes_the_defaults() -> None:
    config = parse(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {N8N}
        """
    )

    assert config.api == ApiConfig(
        host="127.0.0.1",
        port=8124,
        tokens=(ApiToken("n8n", N8N, frozenset({"read"})),),
        max_connections=512,
        header_timeout=10.0,
    )


def test_every_option_is_read() -> None:
    config = parse(
        f"""
        webhook:
          listen: 127.0.0.1:8123
        api:
          listen: "[::1]:8124"
          max_connections: 64
          header_timeout: 2.5
          tokens:
            - name: n8n
              token: {N8N}
              scopes: [read, act]
            - name: node-red.button_1
              token: {NODE_RED}
              scopes: [ACT, act]
        """
    )

    assert config.api is not None
    assert (config.api.host, config.api.port) == ("::1", 8124)
    assert config.api.max_connections == 64
    assert config.api.header_timeout == 2.5
    assert config.api.tokens == (
        ApiToken("n8n", N8N, frozenset({"read", "act"})),
        ApiToken("node-red.button_1", NODE_RED, frozenset({"act"})),
    )
    assert config.webhook is not None
    assert config.webhook.port == 8123


def test_without_the_section_there_is_no_api() -> None:
    assert parse("automations: []\n").api is None


@pytest.mark.parametrize(
    ("webhook", "api"),
    [
        ("127.0.0.1:8123", "127.0.0.2:8123"),  # same port, another address
        ("127.0.0.1:8123", "127.0.0.1:8124"),
        ("0.0.0.0:8123", "[::1]:8123"),  # the IPv4 wildcard leaves IPv6 alone
    ],
)
def test_listeners_on_different_sockets_are_fine(webhook: str, api: str) -> None:
    config = parse(
        f"""
        webhook: {{listen: "{webhook}"}}
        api: {{listen: "{api}", tokens: [{{name: a, token: {N8N}}}]}}
        """
    )

    assert config.api is not None
    assert config.webhook is not None


# -- problems, each with its path and line --------------------------------------------------


def test_a_scope_outside_read_and_act_is_named_at_its_index() -> None:
    assert problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {N8N}
            - name: node-red
              token: {NODE_RED}
              scopes: [write, act, admin]
        """
    ) == [
        "automations.yaml, line 9: api.tokens[1].scopes[0]: must be one of read, act (got 'write')",
        "automations.yaml, line 9: api.tokens[1].scopes[2]: must be one of read, act (got 'admin')",
    ]


@pytest.mark.parametrize(
    ("scopes", "message"),
    [
        ("[]", "must name at least one scope: read, act"),
        ("read", "must be a list such as [read, act] (got text)"),
    ],
)
def test_scopes_are_a_non_empty_list(scopes: str, message: str) -> None:
    assert problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {N8N}
              scopes: {scopes}
        """
    ) == [f"automations.yaml, line 7: api.tokens[0].scopes: {message}"]


def test_names_are_unique() -> None:
    assert problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {N8N}
            - name: n8n
              token: {NODE_RED}
        """
    ) == [
        "automations.yaml, line 7: api.tokens[1].name: 'n8n' is already the name of "
        "api.tokens[0] (line 5)"
    ]


@pytest.mark.parametrize("name", ["", "two words", "x" * 65, "slash/name", 42])
def test_a_name_is_a_short_plain_word(name: object) -> None:
    written = repr(name) if isinstance(name, str) else name
    (problem,) = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: {written}
              token: {N8N}
        """
    )

    assert problem.startswith(
        "automations.yaml, line 5: api.tokens[0].name: must be 1 to 64 letters, digits, "
        "'_', '.' or '-' (got "
    )


def test_a_token_given_twice_is_a_problem_that_never_shows_it() -> None:
    lines = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {N8N}
            - name: node-red
              token: {N8N}
        """
    )

    assert lines == [
        "automations.yaml, line 8: api.tokens[1].token is the same as api.tokens[0].token "
        "(line 6): give each client its own"
    ]
    assert N8N not in "\n".join(lines)


def test_a_short_token_says_the_minimum_and_how_to_make_one() -> None:
    short = "only-twenty-three-chars"  # 23
    lines = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {short}
        """
    )

    assert lines == [
        "automations.yaml, line 6: api.tokens[0].token: must be at least 24 characters "
        f"(got 23); make one with: {MAKE_TOKEN}"
    ]
    assert short not in "\n".join(lines)


@pytest.mark.parametrize(
    ("written", "message"),
    [
        (f'"{N8N} {N8N}"', "must not contain spaces, tabs or line breaks"),
        (f'"{N8N}\\t"', "must not contain spaces, tabs or line breaks"),
        ("123456789012345678901234567890", "must be text (got a number)"),
        ('""', f"must be at least 24 characters (got 0); make one with: {MAKE_TOKEN}"),
    ],
)
def test_a_token_is_one_long_word_of_text(written: str, message: str) -> None:
    lines = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: {written}
        """
    )

    assert lines == [f"automations.yaml, line 6: api.tokens[0].token: {message}"]
    assert N8N not in "\n".join(lines)
    assert "1234567890" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (
            "[]",
            "must list at least one token; for no API, remove the api section",
        ),
        ("n8n", "must be a list of tokens, each with a name and a token (got text)"),
    ],
)
def test_tokens_is_a_list_of_at_least_one(tokens: str, message: str) -> None:
    assert problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens: {tokens}
        """
    ) == [f"automations.yaml, line 4: api.tokens: {message}"]


def test_an_empty_section_needs_listen_and_tokens() -> None:
    assert sorted(problems("automations: []\napi:\n")) == [
        "automations.yaml, line 2: api.listen is required for 'api'",
        "automations.yaml, line 2: api.tokens is required for 'api'",
    ]


def test_a_token_needs_a_name_and_a_token() -> None:
    assert sorted(
        problems(
            """
            api:
              listen: 127.0.0.1:8124
              tokens:
                - scopes: [read]
            """
        )
    ) == [
        "automations.yaml, line 5: api.tokens[0].name is required for an API token",
        "automations.yaml, line 5: api.tokens[0].token is required for an API token",
    ]


def test_a_token_that_is_not_a_mapping_is_refused_and_never_shown() -> None:
    lines = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - {N8N}
        """
    )

    assert lines == [
        "automations.yaml, line 5: api.tokens[0]: must be a mapping with a name and a token "
        "(got text)"
    ]


def test_unknown_keys_get_a_did_you_mean() -> None:
    assert problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          max_connection: 64
          tokens:
            - name: n8n
              token: {N8N}
              scope: [act]
        """
    ) == [
        "automations.yaml, line 4: api.max_connection is not a valid option for 'api' "
        "(did you mean 'max_connections'?)",
        "automations.yaml, line 8: api.tokens[0].scope is not a valid option for an API "
        "token (did you mean 'scopes'?)",
    ]


def test_options_written_at_the_top_level_are_pointed_to_the_section() -> None:
    assert problems(f"tokens: [{{name: a, token: {N8N}}}]\n") == [
        "automations.yaml, line 1: tokens is not a valid section (it is an option of 'api:': "
        "indent it under that section)"
    ]


def test_every_bad_token_is_reported_not_only_the_first() -> None:
    assert problems(
        """
        api:
          listen: 127.0.0.1:8124
          header_timeout: 0
          tokens:
            - {name: a, token: short-one}
            - {name: b, token: short-two, scopes: [root]}
            - {name: c c, token: short-three}
        """
    ) == [
        "automations.yaml, line 4: api.header_timeout: must be from 1 to 300 seconds (got 0)",
        "automations.yaml, line 6: api.tokens[0].token: must be at least 24 characters "
        f"(got 9); make one with: {MAKE_TOKEN}",
        "automations.yaml, line 7: api.tokens[1].token: must be at least 24 characters "
        f"(got 9); make one with: {MAKE_TOKEN}",
        "automations.yaml, line 7: api.tokens[1].scopes[0]: must be one of read, act (got 'root')",
        "automations.yaml, line 8: api.tokens[2].name: must be 1 to 64 letters, digits, "
        "'_', '.' or '-' (got 'c c')",
        "automations.yaml, line 8: api.tokens[2].token: must be at least 24 characters "
        f"(got 11); make one with: {MAKE_TOKEN}",
    ]


@pytest.mark.parametrize(
    ("webhook", "api", "hosts"),
    [
        ("127.0.0.1:8123", "127.0.0.1:8123", "127.0.0.1"),
        ("0.0.0.0:8123", "127.0.0.1:8123", "127.0.0.1 and 0.0.0.0"),
        ("localhost:8123", "127.0.0.1:8123", "127.0.0.1 and localhost"),
        ("[::]:8123", "[::1]:8123", "::1 and ::"),
    ],
)
def test_the_api_cannot_share_the_webhook_listeners_port(
    webhook: str, api: str, hosts: str
) -> None:
    assert problems(
        f"""
        webhook:
          listen: "{webhook}"
        api:
          listen: "{api}"
          tokens: [{{name: n8n, token: {N8N}}}]
        """
    ) == [
        "automations.yaml, line 5: api.listen: must differ from webhook.listen (line 3): "
        f"both claim port 8123 on {hosts}, and a port takes one listener"
    ]


def test_a_shared_port_is_reported_beside_the_sections_other_problems() -> None:
    assert problems(
        """
        webhook:
          listen: 127.0.0.1:8123
          header_timeout: 0
        api:
          listen: 127.0.0.1:8123
          tokens: []
        """
    ) == [
        "automations.yaml, line 4: webhook.header_timeout: must be from 1 to 300 seconds (got 0)",
        "automations.yaml, line 6: api.listen: must differ from webhook.listen (line 3): "
        "both claim port 8123 on 127.0.0.1, and a port takes one listener",
        "automations.yaml, line 7: api.tokens: must list at least one token; for no API, "
        "remove the api section",
    ]


# -- secrets --------------------------------------------------------------------------------


def test_reprs_hide_the_tokens() -> None:
    config = parse(
        f"""
        webhook: {{listen: "127.0.0.1:8123"}}
        api:
          listen: 127.0.0.1:8124
          tokens:
            - {{name: n8n, token: {N8N}, scopes: [act, read]}}
            - {{name: node-red, token: {NODE_RED}}}
        """
    )
    assert config.api is not None

    for text in (repr(config), repr(config.api), str(config.api), repr(config.api.tokens)):
        assert N8N not in text
        assert NODE_RED not in text
    assert repr(config.api.tokens[0]) == (
        "ApiToken(name='n8n', token='***', scopes=['act', 'read'])"
    )
    assert repr(config.api) == (
        "ApiConfig(host='127.0.0.1', port=8124, tokens=("
        "ApiToken(name='n8n', token='***', scopes=['act', 'read']), "
        "ApiToken(name='node-red', token='***', scopes=['read'])), "
        "max_connections=512, header_timeout=10.0)"
    )


def test_literal_tokens_never_appear_in_problems() -> None:
    spaced = "spaced-token-with a-space-inside"
    short = "tiny-secret"
    with pytest.raises(ConfigError) as caught:
        parse(
            f"""
            api:
              listen: 127.0.0.1:8124
              tokens:
                - {{name: n8n, token: {N8N}}}
                - {{name: twin, token: {N8N}}}
                - {{name: spaced, token: "{spaced}"}}
                - {{name: short, token: {short}}}
                - {{name: bad name, token: {NODE_RED}, scopes: [{NODE_RED}]}}
                - {NODE_RED}
            """
        )

    error = caught.value
    assert len(error.problems) == 6
    texts = [str(error), repr(error), *(repr(p) for p in error.problems)]
    for text in texts:
        for secret in (N8N, NODE_RED, spaced, short):
            assert secret not in text, (secret, text)
    assert "api.tokens[4].scopes[0]: must be one of read, act (got '***')" in str(error)


def test_tokens_read_with_secret_and_env_work_and_stay_secret(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text(f"api_token_n8n: {N8N}\n", encoding="utf-8")

    config = parse(
        """
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: n8n
              token: !secret api_token_n8n
              scopes: [read, act]
            - name: node-red
              token: !env NODE_RED_TOKEN
        """,
        base_dir=tmp_path,
        environ={"NODE_RED_TOKEN": NODE_RED},
    )

    assert config.api is not None
    n8n, node_red = config.api.tokens
    assert (n8n.name, n8n.token, n8n.scopes) == ("n8n", N8N, frozenset({"read", "act"}))
    assert node_red.token == NODE_RED
    # Plain text for the listener to compare, not the loader's wrapper.
    assert type(n8n.token) is str
    assert not isinstance(node_red.token, SecretValue)
    assert N8N not in repr(config)
    assert NODE_RED not in repr(config)


def test_a_bad_token_read_with_secret_is_reported_without_it(tmp_path: Path) -> None:
    (tmp_path / "secrets.yaml").write_text("api_token: has a space in it\n", encoding="utf-8")

    lines = problems(
        """
        api:
          listen: 127.0.0.1:8124
          tokens:
            - {name: n8n, token: !secret api_token}
            - {name: other, token: !secret api_tokn}
        """,
        base_dir=tmp_path,
    )

    assert lines == [
        "automations.yaml, line 5: api.tokens[0].token: must not contain spaces, tabs or "
        "line breaks",
        "automations.yaml, line 6: api.tokens[1].token: secret 'api_tokn' is not in "
        "secrets.yaml (did you mean 'api_token'?)",
    ]


def test_loading_registers_every_token_for_redaction() -> None:
    parse(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - {{name: n8n, token: {N8N}}}
            - {{name: node-red, token: {NODE_RED}, scopes: [act]}}
        """
    )

    assert N8N in SECRETS
    assert NODE_RED in SECRETS
    scrubbed = scrub_text(f"Authorization: Bearer {N8N}; other {NODE_RED}")
    assert N8N not in scrubbed
    assert NODE_RED not in scrubbed
    assert scrubbed.startswith("Authorization: Bearer ")


# -- the real command -----------------------------------------------------------------------


def test_ftconnect_check_reports_an_api_problem(tmp_path: Path) -> None:
    """`ftconnect check a.yaml`: exit 2, each api problem at its line, no token, no traceback."""
    config = tmp_path / "a.yaml"
    config.write_text(
        "webhook:\n"
        "  listen: 127.0.0.1:8123\n"
        "api:\n"
        "  listen: 127.0.0.1:8123\n"
        "  tokens:\n"
        f"    - {{name: n8n, token: {N8N}, scopes: [write]}}\n"
        f"    - {{name: twin, token: {N8N}}}\n"
        "automations: []\n",
        encoding="utf-8",
    )
    environ = {key: value for key, value in os.environ.items() if key != "FINETUNING_API_KEY"}
    environ["HOME"] = str(tmp_path)

    done = subprocess.run(
        [sys.executable, "-m", "connector.cli", "check", str(config)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output
    assert N8N not in output
    problems_shown = [line for line in done.stderr.splitlines() if line.startswith("a.yaml")]
    assert problems_shown == [
        "a.yaml, line 4: api.listen: must differ from webhook.listen (line 2): both claim "
        "port 8123 on 127.0.0.1, and a port takes one listener",
        "a.yaml, line 6: api.tokens[0].scopes[0]: must be one of read, act (got 'write')",
        "a.yaml, line 7: api.tokens[1].token is the same as api.tokens[0].token (line 6): "
        "give each client its own",
    ]


@pytest.mark.parametrize("section", ["api", "webhook"])
def test_a_url_where_an_address_is_wanted_is_a_problem_before_run_trips_on_it(
    section: str,
) -> None:
    tokens = f"\n          tokens:\n            - name: n8n\n              token: {N8N}"
    found = problems(
        f"""
        {section}:
          listen: http://127.0.0.1:8124{tokens if section == "api" else ""}
        """
    )
    [line] = [line for line in found if f"{section}.listen" in line]
    assert "not a URL" in line
    assert "write e.g. 127.0.0.1:8124" in line


def test_a_token_may_be_limited_to_some_actions() -> None:
    config = parse(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: button
              token: {N8N}
              scopes: [act]
              actions: [generate]
            - name: n8n
              token: {NODE_RED}
              scopes: [read, act]
        """
    )
    assert config.api is not None
    button, n8n = config.api.tokens
    assert button.actions == frozenset({"generate"})
    assert n8n.actions is None  # every action
    assert "actions=['generate']" in repr(button)


def test_an_unknown_action_in_a_tokens_actions_is_a_problem_with_a_suggestion() -> None:
    found = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: button
              token: {N8N}
              scopes: [act]
              actions: [generat, 7]
        """
    )
    assert any(
        "api.tokens[0].actions[1]" in line and "must be an action's key" in line for line in found
    ), found
    found = problems(
        f"""
        api:
          listen: 127.0.0.1:8124
          tokens:
            - name: button
              token: {N8N}
              scopes: [act]
              actions: [generat]
        """
    )
    [line] = [line for line in found if "api.tokens[0].actions[0]" in line]
    assert "did you mean 'generate'?" in line
