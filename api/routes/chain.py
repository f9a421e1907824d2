"""The hash chain's signed checkpoints, the keys that check them, and one event's proof against them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from hajj_ledger.api.deps import ArchivesDep, ChainDep, Limit, Position, allow, caller
from hajj_ledger.api.problems import ProblemError, not_found
from hajj_ledger.api.schemas import CheckpointPublic, CheckpointsPublic, ProofPublic, SigningKeysPublic
from hajj_ledger.audit.signing import SigningKeyError
from hajj_ledger.domain.access import AUDIT_READERS, EVERY_AGENCY
from hajj_ledger.domain.errors import NotFoundError

router = APIRouter(prefix="/v1/audit", tags=["audit"], dependencies=[Depends(caller)])


def _no_key(error: SigningKeyError) -> ProblemError:
    return ProblemError(503, "no-signing-key", "No signing key", str(error))


@router.get(
    "/checkpoints",
    openapi_extra=allow(EVERY_AGENCY),
    summary="The chain's signed checkpoints, oldest first",
    description="Each signs (position, head, signed_at, key_id); check them with `GET /v1/audit/keys`.",
)
def checkpoints(
    chain: ChainDep,
    after: Annotated[Position | None, Query(description="the last position of the previous page")] = None,
    limit: Limit = 100,
) -> CheckpointsPublic:
    signed = chain.checkpoints(after if after is not None else -(2**63), limit + 1)
    page = [CheckpointPublic(**c.to_json()) for c in signed[:limit]]
    return CheckpointsPublic(items=page, next_after=page[-1].position if len(signed) > limit else None)


@router.post(
    "/checkpoints",
    status_code=201,
    openapi_extra=allow(AUDIT_READERS),
    summary="Seal the log to its head and sign a checkpoint there, now",
)
def make_checkpoint(chain: ChainDep) -> CheckpointPublic:
    """Seals every event recorded so far into the hash chain and signs a checkpoint at the head (it changes the chain's
    checkpoints, never an event); 409 on a ledger with no events yet, 503 without a signing key."""
    try:
        made = chain.checkpoint()
    except SigningKeyError as error:
        raise _no_key(error) from None
    if made is None:
        raise ProblemError(409, "empty-ledger", "Nothing to checkpoint", "the ledger holds no events yet")
    return CheckpointPublic(**made.to_json())


@router.get("/keys", openapi_extra=allow(EVERY_AGENCY), summary="The public keys that check the checkpoints")
def keys(chain: ChainDep) -> SigningKeysPublic:
    """Each signing key's id and its Ed25519 public key: what checks a checkpoint's signature offline."""
    if chain.keys is None:
        raise _no_key(SigningKeyError("this ledger has no signing key configured"))
    return SigningKeysPublic(**chain.keys.public.to_json())


@router.get(
    "/proof",
    openapi_extra=allow(AUDIT_READERS),
    summary="What an auditor needs to check one event offline against a signed checkpoint",
    description="Check it with the public keys alone: `check_proof.py` in docs/auditing.md does it in a few lines.",
)
def proof(
    chain: ChainDep,
    archives: ArchivesDep,
    position: Annotated[Position, Query(description="the event's position", openapi_examples={"first": {"value": 1}})],
) -> ProofPublic:
    try:
        return ProofPublic(**chain.proof(position))
    except NotFoundError as error:
        archived = archives.of(chain.tables.archived_season(position))  # a closed season's event: its archive's
        if archived is None:
            raise not_found(str(error)) from None
    try:
        return ProofPublic(**archived.chain.proof(position))
    except NotFoundError as error:
        raise not_found(str(error)) from None
    except SigningKeyError as error:
        raise _no_key(error) from None
