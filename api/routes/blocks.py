"""Blocks: the users whose messages to you are refused."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse
from sanic.response import empty

from api import docs, validation
from api.context import ApiRequest
from api.errors import ApiError, ErrorCode, ValidationError
from api.guard import authenticated
from api.responses import json


@authenticated
async def block(request: ApiRequest) -> HTTPResponse:
    """Block a user: their messages to you are refused (403), yours to them go on."""
    name = validation.name(validation.json_object(request))
    await request.services.messaging.block(request.ctx.session, name)
    return empty()


@authenticated
async def unblock(request: ApiRequest, name: str) -> HTTPResponse:
    """Take a user off your blocks."""
    try:
        blocked = validation.name({"name": name})
    except ValidationError:  # not a name: never blocked
        raise ApiError(ErrorCode.NO_SUCH_BLOCK, "you have not blocked this name") from None
    await request.services.messaging.unblock(request.ctx.session, blocked)
    return empty()


@authenticated
async def list_blocks(request: ApiRequest) -> HTTPResponse:
    """The users you have blocked."""
    return json({"blocks": await request.services.messaging.blocked(request.ctx.session)})


def blueprint() -> Blueprint:
    """A new blueprint with this module's routes and their descriptions."""
    bp = Blueprint("blocks")
    docs.add_route(
        bp,
        "POST",
        "/blocks/",
        block,
        docs.Doc(
            "Block a user: their messages to you are refused",
            "blocks",
            ok=(
                204,
                None,
                "Blocked (one way: you can still write to them); messages already delivered stay.",
            ),
            errors=(
                *docs.BODY_ERRORS,
                *docs.AUTH_ERRORS,
                ErrorCode.CSRF_FAILED,
                ErrorCode.UNKNOWN_RECIPIENT,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            body=docs.BLOCK_BODY,
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "DELETE",
        "/blocks/<name:str>/",
        unblock,
        docs.Doc(
            "Unblock a user",
            "blocks",
            ok=(204, None, "Unblocked."),
            errors=(
                *docs.AUTH_ERRORS,
                ErrorCode.CSRF_FAILED,
                ErrorCode.NO_SUCH_BLOCK,
                ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                ErrorCode.STORAGE_UNAVAILABLE,
            ),
            secured=True,
        ),
    )
    docs.add_route(
        bp,
        "GET",
        "/blocks/",
        list_blocks,
        docs.Doc(
            "The users you have blocked",
            "blocks",
            ok=(200, docs.BLOCKS_REPLY, "Their names, sorted."),
            errors=(*docs.AUTH_ERRORS, ErrorCode.STORAGE_UNAVAILABLE),
            secured=True,
        ),
    )
    return bp
