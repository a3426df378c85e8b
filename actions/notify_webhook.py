"""Action: POST the event to any URL, signed per Standard Webhooks (n8n, Node-RED, HA)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import voluptuous as vol

from connector.delivery.webhooks import WebhookSecretError, secret_key, send_webhook
from connector.plugin import ActionContext, ActionSpec, number_range, templatable


def _url(value: Any) -> str:
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise vol.Invalid("must be an http(s) URL")
    return str(value)


def _secret(value: Any) -> str:
    try:
        secret_key(str(value))
    except WebhookSecretError as err:
        raise vol.Invalid(str(err)) from None
    return str(value)


def _json_ready(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


async def run(context: ActionContext, options: Mapping[str, Any]) -> Mapping[str, Any]:
    """Send once, retrying 429/5xx/timeouts; the message id is stable for this run's step."""
    body = options.get("body")
    if body is None:
        body = {
            "type": f"ftconnect.{context.event.kind}",
            "automation": context.run.automation_id,
            # The same shape as `ftconnect events --json` (see Event.to_dict).
            "trigger": context.event.to_dict(),
            "steps": context.variables["steps"],
        }
    delivery = await send_webhook(
        options["url"],
        _json_ready(body),
        secret=options.get("secret"),
        session=context.session,
        msg_id=f"msg_{context.run.run_id}_{context.step.id}",
        max_attempts=options["max_attempts"],
        timeout=options["timeout"],
    )
    return {"status": delivery.status, "attempts": delivery.attempts, "msg_id": delivery.msg_id}


ACTION = ActionSpec(
    key="notify_webhook",
    title="Send a signed webhook",
    description="POSTs the event (or a templated `body`) as JSON to any URL, signed per the "
    "Standard Webhooks spec when a `whsec_...` secret is set, with retries on 429, 5xx and "
    "timeouts. How n8n, Node-RED and Home Assistant webhooks receive our events.",
    schema=vol.Schema(
        {
            vol.Required("url", description="where to POST"): templatable(_url),
            vol.Optional("secret", description="whsec_... signing secret (use !secret)"): _secret,
            vol.Optional("body", description="JSON body (default: trigger and steps)"): object,
            vol.Optional(
                "max_attempts", default=5, description="attempts before giving up"
            ): vol.All(vol.Coerce(int), vol.Range(min=1, max=20)),
            vol.Optional("timeout", default=10, description="seconds per attempt"): number_range(
                1, 120, " seconds"
            ),
        }
    ),
    example={
        "action": "notify_webhook",
        "url": "http://homeassistant.local:8123/api/webhook/new_track",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    },
    run=run,
    providers=frozenset({"finetuning", "tempolor"}),
)
