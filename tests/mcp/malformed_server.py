"""A stdio MCP server written by hand that lists a tool properly but answers its calls
with a result that is not an MCP result (``content`` is not a list)."""

from __future__ import annotations

import json
import sys

TOOL = {"name": "broken", "description": "Answers garbage.", "inputSchema": {"type": "object", "properties": {}}}


def reply(message_id: object, result: object = None, error: object = None) -> None:
    body = {"jsonrpc": "2.0", "id": message_id}
    body.update({"error": error} if error is not None else {"result": result})
    sys.stdout.write(json.dumps(body) + "\n")
    sys.stdout.flush()


for line in sys.stdin:
    message = json.loads(line)
    method, message_id = message.get("method"), message.get("id")
    if message_id is None:
        continue  # notifications
    if method == "initialize":
        reply(message_id, {
            "protocolVersion": message["params"]["protocolVersion"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "malformed", "version": "0"},
        })
    elif method == "tools/list":
        reply(message_id, {"tools": [TOOL]})
    elif method == "tools/call":
        reply(message_id, {"content": "this should be a list", "isError": "maybe"})
    else:
        reply(message_id, error={"code": -32601, "message": f"method not found: {method}"})
