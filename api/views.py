"""How the service's values look in a JSON answer, where more than one route shows them."""

from __future__ import annotations

from typing import Any

from storage.models import FamilyInfo, Message


def session_view(family: FamilyInfo, current: str | None) -> dict[str, Any]:
    """A session as `/sessions/` and the export show it (`current`: the caller's family)."""
    return {
        "id": family.id,
        "created_at": family.created_at,
        "last_used_at": family.last_used_at,
        "user_agent": family.user_agent,
        "current": family.id == current,
    }


def message_view(message: Message) -> dict[str, Any]:
    """A message as `/messages/` and the export show it."""
    return {
        "id": message.id,
        "from": message.sender,
        "to": message.recipient,
        "text": message.text,
        "sent_at": message.sent_at,
    }
