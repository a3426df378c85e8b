"""`ftconnect demo`: the main job end to end, on the embedded sandbox.

Starts the sandbox in-process (no account, no network, no credits), then
drives the API the way an automation would: check the account, submit
generations (one set to fail), follow them to the end, file the finished tracks
in a playlist by name, try a move the privacy rules refuse, clean up with a
bulk delete, and show the credits spent.
"""

from __future__ import annotations

import asyncio
import sys
import time

from .client import FinetuningClient
from .exceptions import FinetuningError
from .models import Generation, GenerationRequest, GenerationStatus
from .sandbox import SandboxConfig, run_sandbox

DEMO_REQUESTS = (
    {"tags": "lofi chill piano, vinyl crackle, rainy night", "duration": 30, "bpm": 80},
    {"tags": "epic orchestral trailer, big drums", "duration": 45, "bpm": 140, "key": "D"},
    # The sandbox fails every generation whose tags carry its fail marker.
    {"tags": "glitchy ambient #fail", "duration": 20},
)


def _say(message: str) -> None:
    print(message, flush=True)


async def run_demo(*, seed: int = 1) -> int:
    """Run the demo; returns the process exit code."""
    started = time.monotonic()
    config = SandboxConfig(seed=seed, pending_delay=0.3, processing_delay=1.5)
    async with run_sandbox(config) as sandbox:
        _say(f"sandbox: Finetuning.ai stand-in on {sandbox.url} (no account, no credits spent)")
        async with FinetuningClient(sandbox.api_key, base_url=sandbox.url) as client:
            try:
                await _tour(client)
            except FinetuningError as err:
                print(f"demo: failed: {err}", file=sys.stderr)
                return 1
    _say(f"done in {time.monotonic() - started:.1f} s")
    return 0


async def _tour(client: FinetuningClient) -> None:
    account = await client.get_account()
    credits_before = account.limits.total_remaining
    _say(f"account: {account.name} ({account.tier}), {credits_before} credits left")

    submitted: list[Generation] = []
    for fields in DEMO_REQUESTS:
        generation = await client.create_generation(GenerationRequest(**fields))
        submitted.append(generation)
        _say(f"submitted {generation.id}: {generation.prompt!r} ({generation.status.value})")

    def progress(generation: Generation) -> None:
        if not generation.is_terminal:
            _say(f"  ... {generation.id} is {generation.status.value}")

    finished = await asyncio.gather(
        *(
            client.wait_for_generation(g.id, first_delay=0.5, max_delay=1.0, on_progress=progress)
            for g in submitted
        )
    )
    completed = [g for g in finished if g.status is GenerationStatus.COMPLETED]
    failed = [g for g in finished if g.status is GenerationStatus.FAILED]
    for generation in completed:
        _say(
            f"trigger track_completed: {generation.id} {generation.title!r}, "
            f"{generation.duration:.1f} s, {generation.audio_url}"
        )
    for generation in failed:
        _say(f"trigger generation_failed: {generation.id}: {generation.error_message}")

    focus = await client.resolve_playlist("focus beats")
    added = await client.add_tracks(focus, [g.id for g in completed])
    _say(f"action add_to_playlist 'Focus Beats': added {len(added.succeeded)}")
    detail = await client.get_playlist(focus)
    _say(f"  'Focus Beats' now holds {detail.track_count} tracks")

    public = await client.resolve_playlist("Public Picks")
    moved = await client.move_tracks(focus, public, [completed[0].id])
    for error in moved.errors:
        _say(f"action move_tracks to 'Public Picks': refused for {error.id}: {error.reason}")
    _say(f"action move_tracks: moved {len(moved.succeeded)}")

    deleted = await client.delete_generations([g.id for g in failed])
    _say(f"action bulk_delete: deleted {len(deleted.succeeded)} failed generation(s)")

    account = await client.get_account()
    spent = credits_before - account.limits.total_remaining
    _say(f"credits: {spent} spent for {len(submitted)} generations submitted")
