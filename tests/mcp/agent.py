"""A scripted MCP agent on the official Python SDK, for the gate's tests (and the demo).

    agent.py URL list                    -> JSON list of the tool names offered
    agent.py URL call NAME ARGS_JSON     -> JSON {"is_error", "text", "progress": [messages]}

The agent token comes from COUNTERSIGN_TOKEN (never from the arguments, which `ps` shows).
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def main() -> None:
    url, command = sys.argv[1], sys.argv[2]
    token = os.environ["COUNTERSIGN_TOKEN"]
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await session.initialize()
                if command == "list":
                    tools = await session.list_tools()
                    print(json.dumps(sorted(t.name for t in tools.tools)))
                    return
                name, arguments = sys.argv[3], json.loads(sys.argv[4])
                progress: list[str] = []

                async def on_progress(done: float, total: float | None, message: str | None) -> None:
                    progress.append(message or f"{done}/{total}")

                result = await session.call_tool(
                    name, arguments, progress_callback=on_progress
                )
                text = "\n".join(
                    c.text for c in result.content if getattr(c, "type", None) == "text"
                )
                print(json.dumps({"is_error": bool(result.is_error), "text": text, "progress": progress}))


asyncio.run(main())
