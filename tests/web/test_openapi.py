"""The JSON API's OpenAPI document, and schemathesis against the served app, signed in."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aigen.app import create_app
from tests.helpers import auth_cookie, make_user, served

# No 5xx, and every answer (status, content type, headers, body) as the document says.
CHECKS = ",".join(
    (
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    )
)
MAX_EXAMPLES = 30  # per operation and phase: bounded, and the seed makes the run repeatable
GENERATE_STATUSES = {"200", "400", "401", "402", "403", "413", "415", "429", "502", "503", "504"}


async def test_the_document_covers_the_api_and_every_status(client) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = await response.get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/api/generate",
        "/api/usage",
        "/api/keys",
        "/api/keys/{key_id}",
    }
    generate = document["paths"]["/api/generate"]["post"]
    assert set(generate["responses"]) == GENERATE_STATUSES
    assert "application/json" in generate["requestBody"]["content"]
    assert set(generate["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    usage = document["paths"]["/api/usage"]["get"]
    assert {"200", "401"} <= set(usage["responses"])
    schemes = document["components"]["securitySchemes"]
    assert schemes["session_cookie"]["in"] == "cookie"
    assert schemes["api_key"] == {"type": "http", "scheme": "bearer"}
    keys = document["paths"]["/api/keys"]
    assert set(keys["post"]["responses"]) == {"201", "400", "401", "403", "409", "413", "415"}
    assert set(keys["get"]["responses"]) == {"200", "401", "403", "413", "415"}
    revoke = document["paths"]["/api/keys/{key_id}"]["delete"]["responses"]
    assert "content" not in revoke["204"]


async def test_schemathesis_finds_no_5xx_and_every_answer_conforms(
    app_settings: dict[str, str], db, tmp_path: Path
) -> None:
    user = await make_user(db, "fuzz@example.com", credits_limit=5)  # 200s, then 402s
    app = create_app(app_settings)
    cookie = f"{app.config['QUART_AUTH_COOKIE_NAME']}={auth_cookie(app, user.id)}"
    async with served(app) as base_url:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json"),
            *("--checks", CHECKS, "--max-examples", str(MAX_EXAMPLES), "--seed", "1"),
            *("--generation-database", "none", "--workers", "1", "--no-color"),
            *("--header", f"Cookie: {cookie}", "--report-dir", str(tmp_path / "report")),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()[-8000:]
    # The cookie signed the requests in: generations were made and charged.
    assert await db.fetchval("SELECT count(*) FROM generations WHERE user_id = $1", user.id) > 0
