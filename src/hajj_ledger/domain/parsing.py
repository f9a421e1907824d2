"""Every command as one union tagged by its event, and its parsing: from decoded JSON or JSON text, or a
ValidationError naming each bad field and why."""

from __future__ import annotations

import json
from functools import cache
from typing import Any, cast

import pydantic
from pydantic import TypeAdapter

from hajj_ledger.domain.catalogue import STEPS
from hajj_ledger.domain.commands import COMMANDS, Command
from hajj_ledger.domain.errors import ValidationError


@cache
def _command() -> TypeAdapter[Command]:
    """Built on first use (as are the models, `defer_build`): a command line that records nothing starts faster."""
    return TypeAdapter(Command)


def parse_command(data: Any) -> Command:
    """A command from decoded JSON, or a ValidationError naming each bad field and why."""
    try:
        return _command().validate_python(data)
    except pydantic.ValidationError as e:
        raise validation_error(e) from None


def parse_command_json(text: str | bytes) -> Command:
    """A command from JSON text. The command line records one command: only its event's model is built when the
    text names a known event (the union of all of them takes longer to build than the rest of `record`); anything
    else goes to the union, which says what is wrong with the tag."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    event = data.get("event") if isinstance(data, dict) else None
    model = COMMANDS.get(event) if isinstance(event, str) else None
    try:
        return cast(Command, model.model_validate_json(text)) if model else _command().validate_json(text)
    except pydantic.ValidationError as e:
        raise validation_error(e) from None


def validation_error(error: pydantic.ValidationError) -> ValidationError:
    problems = []
    for item in error.errors(include_url=False):
        loc = [str(part) for part in item["loc"]]
        if loc and loc[0] in STEPS:  # the union's tag says nothing to the caller
            loc = loc[1:]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid" or item["type"] == "union_tag_not_found":
            loc = ["event"]
        if not loc and ": " in message:  # our own cross-field checks name their field
            field, reason = message.split(": ", 1)
        else:
            field, reason = ".".join(loc) or "command", message
        problems.append((field, reason))
    return ValidationError(*problems[0], problems=problems)
