"""API keys and tokens are checked when the file loads, never shown, and agree with the clients.

`ftconnect check` green must mean `ftconnect run` starts: a key the client would
refuse is a problem of the file, at its line, like any other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from ft_config_support import parse, problems

from connector.automation.model import SecretValue
from connector.automation.problems import ConfigError
from connector.errors import InvalidApiKeyError
from connector.providers.finetuning.credentials import check_api_key
from connector.providers.tempolor.credentials import check_api_token

GOOD_KEY = "ft_live_0123456789abcdef0123456789ABCDEF"
SHAPE = "'ft_live_' followed by 32 hex characters, 40 in all"


def only_problem(text: str, **kwargs: object) -> str:
    found = problems(text, **kwargs)  # type: ignore[arg-type]
    assert len(found) == 1, found
    return found[0]


# -- Finetuning.ai keys ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("sk-12345", "does not start with 'ft_live_' and has 8 characters"),
        ("ft_live_0123", "has 12 characters"),
        ("ft_live_0123456789abcdef0123456789abcdeg", "has characters other than 0-9 and a-f"),
        ("ft_test_0123456789abcdef0123456789abcdef", "does not start with 'ft_live_'"),
        ("ft_live_0123456789abcdef 0123456789abcde", "has characters other than 0-9 and a-f"),
    ],
)
def test_a_malformed_key_from_env_is_a_problem_at_its_line_without_the_key(
    key: str, why: str
) -> None:
    problem = only_problem(
        "poll:\n  backfill: false\nfinetuning:\n  api_key: !env FINETUNING_API_KEY\n",
        environ={"FINETUNING_API_KEY": key},
    )

    assert problem.startswith("automations.yaml, line 4: finetuning.api_key: must be ")
    assert SHAPE in problem
    assert why in problem
    assert key not in problem


def test_a_malformed_literal_key_is_a_problem_and_hidden_everywhere() -> None:
    # The same text pasted into another field is hidden there too: it is a secret.
    found = problems(
        """
        finetuning:
          api_key: sk-literal-12345
        poll:
          idle_interval: sk-literal-12345
        """
    )

    assert found == [
        "automations.yaml, line 3: finetuning.api_key: must be a Finetuning.ai API key, "
        f"{SHAPE} (this one does not start with 'ft_live_' and has 16 characters); create one "
        "under Profile → API, or leave api_key out to run on the embedded sandbox",
        "automations.yaml, line 5: poll.idle_interval: must be a number of seconds (got '***')",
    ]


def test_a_malformed_key_from_env_is_hidden_in_every_other_message() -> None:
    found = problems(
        """
        finetuning:
          api_key: !env FINETUNING_API_KEY
          base_url: sk-env-67890
        """,
        environ={"FINETUNING_API_KEY": "sk-env-67890"},
    )

    assert len(found) == 2
    assert "finetuning.api_key: must be a Finetuning.ai API key" in found[0]
    assert found[1].endswith("finetuning.base_url: must be an http:// or https:// URL (got '***')")
    assert not any("sk-env-67890" in line for line in found)


def test_a_malformed_key_from_secrets_yaml_is_a_problem_at_the_line_using_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "secrets.yaml").write_text("finetuning_key: not-a-real-key\n", encoding="utf-8")

    problem = only_problem(
        "automations: []\nfinetuning:\n  api_key: !secret finetuning_key\n", base_dir=tmp_path
    )

    assert problem.startswith("automations.yaml, line 3: finetuning.api_key: must be ")
    assert "not-a-real-key" not in problem


def test_an_empty_key_says_so_and_how_to_use_the_sandbox() -> None:
    assert only_problem(
        "finetuning:\n  api_key: !env FINETUNING_API_KEY\n", environ={"FINETUNING_API_KEY": " "}
    ) == (
        f"automations.yaml, line 2: finetuning.api_key is empty: a Finetuning.ai API key is "
        f"{SHAPE} (leave api_key out to run on the embedded sandbox)"
    )


def test_a_key_that_is_not_text_keeps_its_message() -> None:
    assert only_problem("finetuning:\n  api_key: 12\n") == (
        "automations.yaml, line 2: finetuning.api_key: must be text (got a number)"
    )


def test_a_well_formed_key_loads_trimmed_and_still_secret() -> None:
    config = parse(
        "finetuning:\n  api_key: !env FINETUNING_API_KEY\n",
        environ={"FINETUNING_API_KEY": f"  {GOOD_KEY}\n"},
    )

    assert config.finetuning.api_key == GOOD_KEY
    assert GOOD_KEY not in repr(config.finetuning)


@pytest.mark.parametrize(
    "key",
    [
        GOOD_KEY,
        "sk-12345",
        "ft_live_",
        "ft_live_0123456789abcdef0123456789abcdef0",
        "FT_LIVE_0123456789abcdef0123456789abcdef",
        "ft_live_0123456789abcdef\t0123456789abcdef",
        "\u00a0ft_live_0123456789abcdef0123456789abcdef",
    ],
)
def test_the_file_accepts_exactly_the_keys_the_client_accepts(key: str) -> None:
    try:
        check_api_key(key)
        client_accepts = True
    except InvalidApiKeyError:
        client_accepts = False
    try:
        parse("finetuning:\n  api_key: !env K\n", environ={"K": key})
        file_accepts = True
    except ConfigError:
        file_accepts = False

    assert file_accepts == client_accepts


# -- TemPolor tokens ---------------------------------------------------------------------


def test_a_token_with_a_line_break_is_a_problem_without_the_token() -> None:
    token = "user:1234-abcd\nX-Injected: 1"
    problem = only_problem(
        "tempolor:\n  api_token: !env TEMPOLOR_TOKEN\n", environ={"TEMPOLOR_TOKEN": token}
    )

    assert problem == (
        "automations.yaml, line 2: tempolor.api_token: must be one word, as useapi.net shows "
        "it, without spaces, line breaks or control characters (this one has 28 characters, "
        "2 of them spaces or control characters)"
    )


def test_an_empty_token_says_so() -> None:
    assert only_problem('tempolor:\n  api_token: ""\n') == (
        "automations.yaml, line 2: tempolor.api_token is empty: copy the API token from useapi.net"
    )


@pytest.mark.parametrize("token", ["user:1234-abcd", "a b", "tab\there", " padded "])
def test_the_file_accepts_exactly_the_tokens_the_client_accepts(token: str) -> None:
    try:
        check_api_token(token)
        client_accepts = True
    except InvalidApiKeyError:
        client_accepts = False
    try:
        config = parse("tempolor:\n  api_token: !env T\n", environ={"T": token})
        file_accepts = True
    except ConfigError:
        file_accepts = False

    assert file_accepts == client_accepts
    if file_accepts:
        assert config.tempolor is not None
        assert config.tempolor.api_key == token.strip()


def test_secret_values_stay_secret_values_once_trimmed() -> None:
    from connector.automation.api_keys import api_key, api_token

    assert isinstance(api_key(SecretValue(f" {GOOD_KEY} ")), SecretValue)
    assert isinstance(api_token(SecretValue(" user:1 ")), SecretValue)
    assert type(api_key(f" {GOOD_KEY} ")) is str


# -- the real command ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["check", "run"])
def test_ftconnect_reports_a_malformed_env_key_as_a_config_problem(
    tmp_path: Path, command: str
) -> None:
    """`FINETUNING_API_KEY=sk-12345 ftconnect check a.yaml` (and `run`): exit 2, no traceback."""
    config = tmp_path / "a.yaml"
    config.write_text(
        "finetuning:\n  api_key: !env FINETUNING_API_KEY\nautomations: []\n", encoding="utf-8"
    )
    environ = {**os.environ, "FINETUNING_API_KEY": "sk-12345"}

    done = subprocess.run(
        [sys.executable, "-m", "connector.cli", command, str(config)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )

    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "a.yaml, line 2: finetuning.api_key: must be a Finetuning.ai API key" in done.stderr
    assert "Traceback" not in output
    assert "sk-12345" not in output


def test_api_key_problem_describes_a_key_from_anywhere_without_showing_it() -> None:
    from connector.automation.api_keys import api_key_problem

    assert api_key_problem(GOOD_KEY) is None
    assert api_key_problem(f"\t{GOOD_KEY}\n") is None
    problem = api_key_problem("sk-12345")
    assert problem is not None
    assert problem.startswith(f"must be a Finetuning.ai API key, {SHAPE} (this one does not ")
    assert "sk-12345" not in problem
