"""Blocks: the names a user has blocked, whose messages to them are refused (one-way)."""

from __future__ import annotations

from storage import keys, scripts
from storage.connection import Client, Monitor, bounded
from storage.errors import BlocksFull, NoSuchBlock, UnknownRecipient
from storage.models import Session
from storage.pipeline import AutoPipeline
from storage.sessions import raise_for_status, session_args, session_keys
from storage.store import Script, Store, translate_errors

DEFAULT_MAX_BLOCKS = 1000


class BlockStore(Store):
    """Each user's blocks, a set `blocks:{<name>}` of at most `max_blocks` names."""

    _block = Script(scripts.BLOCK)
    _unblock = Script(scripts.UNBLOCK)
    _list = Script(scripts.LIST_BLOCKS)

    def __init__(
        self,
        client: Client,
        monitor: Monitor | None = None,
        pipeline: AutoPipeline | None = None,
        *,
        max_blocks: int = DEFAULT_MAX_BLOCKS,
    ) -> None:
        super().__init__(client, monitor, pipeline)
        self.max_blocks = max_blocks

    @translate_errors
    async def block(self, session: Session, name: str) -> None:
        """Block `name` (a user that exists: UnknownRecipient otherwise); BlocksFull past the
        cap. Blocking a name twice is blocking it once."""
        # The blocked user's hash is in another slot: looked at first, by itself.
        if not await bounded(self._client.exists(keys.user(name))):
            raise UnknownRecipient()
        reply = raise_for_status(
            await self._block(
                keys=session_keys(session, keys.blocks(session.name)),
                args=session_args(session, name, self.max_blocks),
            )
        )
        if int(reply[0]) == scripts.BLOCKS_FULL:
            raise BlocksFull()

    @translate_errors
    async def unblock(self, session: Session, name: str) -> None:
        """Unblock `name`; NoSuchBlock if it was not blocked."""
        reply = raise_for_status(
            await self._unblock(
                keys=session_keys(session, keys.blocks(session.name)),
                args=session_args(session, name),
            )
        )
        if not int(reply[1]):
            raise NoSuchBlock()

    @translate_errors
    async def blocked(self, session: Session) -> list[str]:
        """The names the session's user has blocked, sorted."""
        reply = raise_for_status(
            await self._list(
                keys=session_keys(session, keys.blocks(session.name)), args=session_args(session)
            )
        )
        return sorted(str(name) for name in reply[1])
