"""`ftconnect playlists` and `playlist show|add|remove|move`: playlists and their tracks.

A playlist is named by id or by name (matched exactly, ignoring case); bulk changes are
reported by `connector.cli.bulk`.
"""

from __future__ import annotations

from connector.cli.bulk import bulk
from connector.cli.context import Context
from connector.cli.output import EXIT_OK, format_seconds, print_json


async def cmd_playlists(ctx: Context) -> int:
    client = await ctx.client()
    playlists = await client.list_playlists()
    if ctx.args.json:
        print_json([p.to_wire() for p in playlists])
        return EXIT_OK
    for playlist in playlists:
        visibility = "public " if playlist.is_public else "private"
        print(f"{playlist.id}  {visibility}  {playlist.track_count:>4} tracks  {playlist.name}")
    if not playlists:
        ctx.note("no playlists (they are created in the web app)")
    return EXIT_OK


async def cmd_playlist_show(ctx: Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    playlist = await client.get_playlist(playlist_id)
    if ctx.args.json:
        print_json(playlist.to_wire())
        return EXIT_OK
    visibility = "public" if playlist.is_public else "private"
    owner = "" if playlist.is_owner in (None, True) else ", not yours"
    minutes, seconds = divmod(round(playlist.total_duration), 60)
    print(
        f"{playlist.name}  ({visibility}{owner}, {playlist.track_count} tracks, "
        f"{minutes}:{seconds:02d})  {playlist.id}"
    )
    if playlist.description:
        print(playlist.description)
    for track in playlist.tracks:
        track_visibility = "public " if track.is_public else "private"
        title = track.title or track.prompt or ""
        print(f"{track.id}  {track_visibility}  {format_seconds(track.duration):>7}  {title}")
    return EXIT_OK


async def cmd_playlist_add(ctx: Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    # As the add_to_playlist action: a track already there is what was asked for.
    return await bulk(
        ctx,
        lambda: client.add_tracks(playlist_id, ctx.args.ids),
        done_key="added",
        already=("alreadyInPlaylist", "already in the playlist"),
    )


async def cmd_playlist_remove(ctx: Context) -> int:
    client = await ctx.client()
    playlist_id = await client.resolve_playlist(ctx.args.playlist)
    return await bulk(
        ctx, lambda: client.remove_tracks(playlist_id, ctx.args.ids), done_key="removed"
    )


async def cmd_playlist_move(ctx: Context) -> int:
    from connector.errors import FieldProblem, RequestValidationError

    args = ctx.args
    client = await ctx.client()
    source = await client.resolve_playlist(args.source)
    target = await client.resolve_playlist(args.target)
    if source.casefold() == target.casefold():
        # Refused here, as `ft` does, so the message can say how both names resolved.
        same = f"{args.source!r} and {args.target!r} are both playlist {source}"
        raise RequestValidationError(
            [FieldProblem("DST", f"must differ from SRC ({same})")], what="move"
        )
    return await bulk(ctx, lambda: client.move_tracks(source, target, args.ids), done_key="moved")
