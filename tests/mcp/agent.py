"""A scripted MCP agent on the official Python SDK, for the gate's tests (and the demo).

    agent.py URL list                    -> JSON list of the tool names offered
    agent.py URL resources               -> JSON {"resources": [uris], "prompts": [names]}
    agent.py URL read URI                -> JSON {"text"} or {"protocol_error"}
    agent.py URL prompt NAME ARGS_JSON   -> JSON {"text"}
    agent.py URL call NAME ARGS_JSON     -> JSON {"is_error", "text", "progress": [messages]}
                                            (ARGS_JSON may be @FILE)
                                            or {"protocol_error"} when the call is refused as a request

The agent token comes from COUNTERSIGN_TOKEN (never from the arguments, which `ps` shows).
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


async def run(session: ClientSession) -> None:
    command = sys.argv[2]
    await session.initialize()
    if command == "list":
        tools = await session.list_tools()
        print(json.dumps(sorted(t.name for t in tools.tools)))
        return
    if command == "resources":
        listed = await session.list_resources()
        prompts = await session.list_prompts()
        print(json.dumps({"resources": sorted(str(r.uri) for r in listed.resources),
                          "prompts": sorted(p.name for p in prompts.prompts)}))
        return
    if command == "read":
        try:
            read = await session.read_resource(sys.argv[3])
        except Exception as e:
            print(json.dumps({"protocol_error": str(e)}))
            return
        print(json.dumps({"text": "".join(getattr(c, "text", "") for c in read.contents)}))
        return
    if command == "prompt":
        got = await session.get_prompt(sys.argv[3], json.loads(sys.argv[4]))
        print(json.dumps({"text": "".join(getattr(m.content, "text", "") for m in got.messages)}))
        return
    name, raw = sys.argv[3], sys.argv[4]
    if raw.startswith("@"):  # large arguments come from a file
        with open(raw[1:]) as f:
            raw = f.read()
    arguments = json.loads(raw)
    progress: list[str] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(message or f"{done}/{total}")

    # CANCEL_AFTER: give up on the call after that many seconds (the SDK then tells
    # the server the request is cancelled).
    cancel_after = os.environ.get("CANCEL_AFTER")
    try:
        call = session.call_tool(name, arguments, progress_callback=on_progress)
        if cancel_after:
            try:
                result = await asyncio.wait_for(call, float(cancel_after))
            except asyncio.TimeoutError:
                await asyncio.sleep(1)  # let the cancellation reach the server
                print(json.dumps({"cancelled": True, "progress": progress}))
                return
        else:
            result = await call
    except Exception as e:  # a JSON-RPC error: the call was refused as a request
        print(json.dumps({"protocol_error": str(e), "progress": progress}))
        return
    text = "\n".join(
        c.text for c in result.content if getattr(c, "type", None) == "text"
    )
    print(json.dumps({"is_error": bool(result.is_error), "text": text, "progress": progress}))


async def main() -> None:
    url = sys.argv[1]
    token = os.environ["COUNTERSIGN_TOKEN"]
    if url.startswith("stdio:"):
        # stdio:CONFIG runs `countersign gate --stdio --config CONFIG` (COUNTERSIGN_BIN).
        params = StdioServerParameters(
            command=os.environ["COUNTERSIGN_BIN"],
            args=["gate", "--stdio", "--config", url[len("stdio:"):]],
            env={"COUNTERSIGN_TOKEN": token},
        )
        async with stdio_client(params) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await run(session)
        return
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write, *_):
            async with ClientSession(read, write) as session:
                await run(session)


asyncio.run(main())
