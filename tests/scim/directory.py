"""A directory's SCIM client for the tests: scim2-client (a standard SCIM 2.0 client library)
driven one command per line of standard input (JSON), one JSON answer per line of output.

Each command names an operation of the library (discover, create, query, search, replace,
modify, delete) and its arguments; the answer is the resource the library returned (after it
validated the response), or the SCIM error. `raw` sends a request as given, for bad input.
"""

import json
import sys

import httpx2
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_models import Error, Group, ListResponse, PatchOp, SearchRequest, User


def main() -> None:
    base, token = sys.argv[1], sys.argv[2]
    http = httpx2.Client(base_url=f"{base}/scim/v2", headers={"Authorization": f"Bearer {token}"})
    client = SyncSCIMClient(http, raise_scim_errors=False)
    models = {"User": User, "Group": Group}
    for line in sys.stdin:
        command = json.loads(line)
        try:
            answer = run(client, http, models, command)
        except Exception as exc:  # the test reads what went wrong
            answer = {"exception": type(exc).__name__, "detail": str(exc)}
        print(json.dumps(answer), flush=True)


def dump(result):
    if isinstance(result, Error):
        return {"error": {"status": result.status, "scimType": result.scim_type, "detail": result.detail}}
    if isinstance(result, ListResponse):
        return {
            "list": {
                "totalResults": result.total_results,
                "startIndex": result.start_index,
                "itemsPerPage": result.items_per_page,
                "resources": [r.model_dump(mode="json", by_alias=True, exclude_none=True) for r in result.resources or []],
            }
        }
    if result is None:
        return {"ok": True}
    return {"resource": result.model_dump(mode="json", by_alias=True, exclude_none=True)}


def run(client, http, models, command):
    op = command["op"]
    if op == "discover":
        client.discover()
        return {"ok": True, "etag": bool(client.provider.config and client.provider.config.etag.supported)}
    if op == "raw":
        response = http.request(command["method"], command["path"], json=command.get("body"), headers=command.get("headers"))
        body = response.json() if response.content else None
        return {"status": response.status_code, "body": body, "etag": response.headers.get("etag")}
    model = models[command["type"]]
    if op == "create":
        return dump(client.create(model.model_validate(command["resource"])))
    if op == "get":
        return dump(client.query(model, command["id"]))
    if op == "search":
        request = SearchRequest(
            filter=command.get("filter"),
            start_index=command.get("startIndex"),
            count=command.get("count"),
            excluded_attributes=command.get("excludedAttributes"),
        )
        return dump(client.query(model, query_parameters=request))
    if op == "replace":
        # Read, change, write back: the library sends If-Match with the version it read.
        current = client.query(model, command["id"])
        if isinstance(current, Error):
            return dump(current)
        changed = current.model_copy(update=command.get("set", {}))
        if command.get("stale_version"):
            changed.meta.version = command["stale_version"]
        return dump(client.replace(changed))
    if op == "modify":
        patch = PatchOp[model].model_validate({"Operations": command["operations"]})
        return dump(client.modify(model, command["id"], patch))
    if op == "delete":
        return dump(client.delete(model, command["id"]))
    raise ValueError(f"unknown op {op}")


if __name__ == "__main__":
    main()
