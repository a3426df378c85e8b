"""Secrets the connector makes for itself (the webhook token, each REST hook's signing
secret), in 0600 files beside the journal.

Kept out of the database so `events`/`runs` dumps and database copies never
carry them. (Named `secret_files`, not `secrets`, so it is never mistaken for
the standard library module.)
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

from connector.journal.connection import JournalConnection, JournalError

__all__ = ["SecretFiles"]

_SECRET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class SecretFiles(JournalConnection):
    """Secret files in the state directory, each made once."""

    def secret(self, name: str, factory: Callable[[], str]) -> str:
        """A secret kept in its own 0600 file `<state_dir>/<name>`, made once by `factory()`.

        Creation is atomic and race-free across processes: the value is written
        to a private temporary file and hard-linked into place, so a reader sees
        either no file or the whole secret.
        """
        target = self._secret_path(name)
        with self._lock:
            existing = _read_secret(target)
            if existing is not None:
                return existing
            value = factory()
            if not isinstance(value, str) or not value.strip() or "\n" in value.strip():
                raise ValueError(f"the factory for secret {name!r} must return one non-empty line")
            value = value.strip()
            temporary = self.state_dir / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                    handle.write(value + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temporary, target)
                except FileExistsError:
                    # Another process won the race: its secret is the secret.
                    winner = _read_secret(target)
                    if winner is None:
                        raise JournalError(
                            f"the secret file {target} appeared but could not be read",
                            path=target,
                        ) from None
                    return winner
            except OSError as err:
                raise JournalError(
                    f"cannot write the secret file {target}: {err.strerror or err}; "
                    f"check the permissions of {self.state_dir}",
                    path=target,
                ) from err
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temporary.unlink()
            return value

    def remove_secret(self, name: str) -> bool:
        """Delete the secret file `<state_dir>/<name>`; False if there was none.

        Whatever used the secret (a hook's signatures) stops being verifiable
        with it, which is the point: a removed hook's secret is gone for good.
        """
        target = self._secret_path(name)
        with self._lock:
            try:
                target.unlink()
            except FileNotFoundError:
                return False
            except OSError as err:
                raise JournalError(
                    f"cannot delete the secret file {target}: {err.strerror or err}; "
                    f"check the permissions of {self.state_dir}",
                    path=target,
                ) from err
            return True

    def _secret_path(self, name: str) -> Path:
        if not _SECRET_NAME.fullmatch(name) or name.startswith(self.path.name):
            raise ValueError(f"not a usable secret file name: {name!r}")
        return self.state_dir / name


def _read_secret(path: Path) -> str | None:
    """The secret in `path`, None if there is no such file."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise JournalError(
            f"cannot read the secret file {path}: {err.strerror or err}", path=path
        ) from err
    if not value:
        raise JournalError(
            f"the secret file {path} is empty; delete it to have a new secret made "
            "(anything using the old one, such as a webhook URL, must then be updated)",
            path=path,
        )
    return value
