"""The OpenAPI document a person can use: every operation has a summary, a description and (taking a body) an example;
and each example, posted as the document gives it to a fresh server, in the story's order (the market, the journey's
steps, reads, the season's close), each by a role that may, is accepted: 201 (200 for a read), or a 409 naming the
stage, never 403 or 422."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from hajj_ledger.api import agencies
from hajj_ledger.api.app import create_app
from hajj_ledger.api.examples import COMPANY, EXAMPLES, MISSION, PATH_EXAMPLES
from hajj_ledger.api.routes.steps import endpoints
from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.domain.commands import COMMANDS
from hajj_ledger.domain.vocabulary import Role
from hajj_ledger.migrations import upgrade
from hajj_ledger.projections.schema import engine_for
from tests.support import EXECUTABLE, serving

# The first steps the journey's end no longer allows: from them on, the story's steps may be refused (naming the stage).
AFTER_THE_END = list(EXAMPLES).index("VisaRejected")


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]


def test_every_operation_has_a_summary_a_description_and_an_example() -> None:
    document = create_app("sqlite://").openapi()
    found = operations(document)
    assert len(found) > 90
    for method, path, op in found:
        assert op.get("summary") and op.get("description"), f"{method} {path}"
        if "requestBody" in op:
            assert op["requestBody"]["content"]["application/json"]["examples"], f"{method} {path}"
        for parameter in op.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] in PATH_EXAMPLES:
                assert parameter["examples"], f"{method} {path}: {parameter['name']}"
    steps = [op for _, path, op in found if op.get("tags") == ["recording"] and path != "/v1/commands:batch"]
    assert len(steps) == len(COMMANDS) == len(EXAMPLES)
    for op in steps:  # from the catalogue: who, what it changes, what it refuses
        assert all(part in op["description"] for part in ("**Who may record it:**", "**What it changes:**", "403"))


def example(op: dict[str, Any]) -> Any:
    return next(iter(op["requestBody"]["content"]["application/json"]["examples"].values()))["value"]


def filled(path: str, op: dict[str, Any], known: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path with each path parameter's example (or what an earlier answer made), and the query parameters that
    have an example."""
    query = {}
    for parameter in op.get("parameters", []):
        examples = parameter.get("examples")
        value = known.get(parameter["name"]) or (next(iter(examples.values()))["value"] if examples else None)
        if parameter["in"] == "path":
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query" and examples:
            query[parameter["name"]] = value
    return path, query


@pytest.fixture
def keys(store_url: str) -> dict[Role, str]:
    """A fresh store, migrated (no season opened yet), with a key for each role: the demo's mission and company, whose
    ids the examples name."""
    engine = engine_for(store_url)
    upgrade(engine)
    scopes = {Role.MISSION: MISSION, Role.COMPANY: COMPANY}
    with engine.begin() as connection:
        made = {role: agencies.add(connection, role, f"the {role}", scopes.get(role))[1] for role in Role}
    engine.dispose()
    return made


def test_every_example_is_accepted_in_the_storys_order(store_url: str, keys: dict[Role, str], tmp_path: Path) -> None:
    signing = tmp_path / "signing.json"
    subprocess.run([str(EXECUTABLE), "signing-key", "new", str(signing)], check=True, capture_output=True)
    env = {
        **os.environ, "HAJJ_LEDGER_DATABASE_URL": store_url, "HAJJ_LEDGER_SIGNING_KEY_FILE": str(signing),
        "HAJJ_LEDGER_EXPORT_DIR": str(tmp_path / "exports"),
    }  # fmt: skip
    with serving(env, tmp_path / "serve.log") as (base,), httpx.Client(base_url=base, timeout=30) as client:
        document = client.get("/openapi.json").json()
        by_event = {command.model_fields["event"].default: path for path, command in endpoints()}
        ops = {(method, path): op for method, path, op in operations(document)}

        def as_role(role: Role) -> dict[str, str]:
            return {"Authorization": f"Bearer {keys[role]}"}

        def post_step(event: str) -> httpx.Response:
            path, op = by_event[event], ops["post", by_event[event]]
            role = min(STEPS[event].roles, key=list(Role).index)
            url, _ = filled(path, op, {})
            return client.post(url, json=example(op), headers=as_role(role))

        answers = {event: post_step(event) for event in list(EXAMPLES)[: list(EXAMPLES).index("IdentityErased")]}
        for index, (event, answer) in enumerate(answers.items()):
            if index < AFTER_THE_END:
                assert answer.status_code == 201, (event, answer.text)
            else:
                assert answer.status_code in (201, 409), (event, answer.text)
                assert answer.status_code == 201 or answer.json()["current_stage"], (event, answer.text)
        batch = ops["post", "/v1/commands:batch"]
        answer = client.post("/v1/commands:batch", json=example(batch), headers=as_role(Role.MISSION))
        assert answer.status_code == 200, answer.text
        assert [r["status"] for r in answer.json()["results"]] == [201, 409]

        # Every read, by a role that may, with the examples of its parameters (the story's journey, its passport).
        made = client.post("/v1/audit/checkpoints", headers=as_role(Role.AUDITOR))
        assert made.status_code == 201, made.text
        export = client.post("/v1/exports", json=example(ops["post", "/v1/exports"]), headers=as_role(Role.ANALYST))
        assert export.status_code == 202, export.text
        known = {"export_id": export.json()["export_id"], "name": "manifest.json"}
        deadline = time.monotonic() + 60
        while client.get(f"/v1/exports/{known['export_id']}", headers=as_role(Role.ANALYST)).json()["state"] != "done":
            assert time.monotonic() < deadline, "the export never finished"
            time.sleep(0.2)
        for (method, path), op in ops.items():
            if method != "get" or path == "/v1/feed":  # a stream without end: tests/integration/test_feed.py
                continue
            roles = op.get("x-roles", [])
            headers = as_role(Role(min(roles, key=[str(r) for r in Role].index))) if roles else {}
            url, query = filled(path, op, known)
            answer = client.get(url, params=query, headers=headers)
            assert answer.status_code == 200, (path, answer.text)

        # The pilgrim's erasure, then the season's close: accepted, or refused naming the stage.
        for event in list(EXAMPLES)[list(EXAMPLES).index("IdentityErased") :]:
            answer = post_step(event)
            assert answer.status_code == 201 or (answer.status_code == 409 and answer.json()["current_stage"]), (
                event,
                answer.text,
            )
        assert post_step("SeasonClosing").status_code == 409  # closed since: it names the stage
