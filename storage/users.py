"""Users: creation and credential look-up."""

from __future__ import annotations

from datetime import UTC, datetime

from storage import keys, scripts
from storage.connection import Client, bounded, translate_errors
from storage.errors import NameTaken
from storage.models import Credentials
from storage.pipeline import register_script
from storage.throttle import Window, queue_reads, raise_if_blocked


class UserStore:
    """Users kept as hashes `user:{<name>}`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._create = register_script(client, scripts.CREATE_USER)

    @translate_errors
    async def create_user(self, name: str, password_hash: str) -> None:
        """Create the user atomically; raise NameTaken if the name exists."""
        created_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        created = await self._create(keys=[keys.user(name)], args=[password_hash, created_at])
        if not created:
            raise NameTaken(name)

    @translate_errors
    async def login_credentials(
        self, name: str, account: Window, *others: Window
    ) -> Credentials | None:
        """The user's password hash, session generation and recent failed logins (None if no
        such user), in the same round trip as checking the account's throttle window and
        `others`; raise RateLimited if one is full."""
        windows = (account, *others)
        pipe = self._client.pipeline(transaction=False)
        pipe.hmget(keys.user(name), ["password_hash", "generation"])
        queue_reads(pipe, windows)
        (password_hash, generation), *throttle_replies = await bounded(pipe.execute())
        raise_if_blocked(windows, throttle_replies)
        if password_hash is None:
            return None
        return Credentials(
            password_hash=str(password_hash),
            generation=int(generation or 0),
            failed_logins=int(throttle_replies[0] or 0),  # the account window's count
        )
