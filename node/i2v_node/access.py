"""Who may call a node: with --tokens-file, every Node call (Generate, Cancel, Status) needs a token
from that file, a client's or an admin's (the coordinators present theirs, --dispatch-token-file);
a call without one ends UNAUTHENTICATED before the servicer sees it. Health and reflection stay
open. Without a tokens file a node answers anyone, as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from i2v_common import tokens
from i2v_common.handlers import Handler, HandlerWrap, rebuild
from i2v_common.tokens import TokensFile

log = logging.getLogger(__name__)


def token_wrap(tokens_file: TokensFile) -> HandlerWrap:
    """handlers.HandlerWrap: each Node method authenticates its caller first."""

    def wrap(method: str, handler: Handler) -> Handler:
        if handler.response_streaming:
            inner_stream = handler.unary_stream

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                await tokens.principal(tokens_file, context)
                async for item in inner_stream(request, context):
                    yield item

            return rebuild(handler, behavior=streaming)
        inner = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            await tokens.principal(tokens_file, context)
            return await inner(request, context)

        return rebuild(handler, behavior=unary)

    return wrap
