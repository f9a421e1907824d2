"""The hash chain (`--only chain`): ingest with the sealer following against the same ingest without it, verify of
the whole store, and one-event proofs checked by the script docs/auditing.md shows."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, SEED, Sizes, fresh_store, ledger, now, run_child, summarise
from bench.ingest import measure_ingest


def measure_chain(url: str, baseline_url: str, pilgrims: int, proofs: int) -> dict[str, Any]:
    """The hash chain: ingest with the sealer following in its own process against the same ingest without it
    (a second fresh store, same run); then verify the whole store; then one-event proofs checked by the README's
    own script, in process (no interpreter start-up counted)."""
    from hajj_ledger.audit.chain import Chain
    from hajj_ledger.audit.signing import KEY_FILE_VARIABLE, SigningKeys

    baseline = measure_ingest(baseline_url, pilgrims)
    directory = Path(tempfile.mkdtemp(prefix="hajj-bench-chain-"))
    keys = SigningKeys.create(directory / "signing.json")
    sealed_ledger = ledger(url)
    chain = Chain(sealed_ledger, keys)  # creates the chain's tables before the sealer starts
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HAJJ_LEDGER_DATABASE_URL": url, KEY_FILE_VARIABLE: str(keys.path)}
    sealer = subprocess.Popen([sys.executable, "-m", "hajj_ledger.cli", "seal", "--follow"], env=env)
    try:
        sealed = measure_ingest(url, pilgrims)
        waited = time.perf_counter()
        while chain.tables.seal_state()[0] < sealed_ledger.head():
            if sealer.poll() is not None:
                raise RuntimeError(f"the sealer exited ({sealer.returncode}) before catching up")
            time.sleep(0.05)
        behind_seconds = time.perf_counter() - waited
    finally:
        sealer.terminate()
        sealer.wait()
    chain.checkpoint()
    started = time.perf_counter()
    report = chain.verify(keys.public)
    verify_seconds = time.perf_counter() - started
    assert report.ok, report.findings[:3]
    shutil.copy(ROOT / "docs" / "examples" / "check_proof.py", directory)  # the script docs/auditing.md shows
    (directory / "keys.json").write_text(json.dumps(keys.public.to_json()))
    rng = random.Random(SEED)
    positions = [rng.randint(1, sealed_ledger.head()) for _ in range(proofs)]
    checks = []
    for position in positions:
        try:
            proof = chain.proof(position)
        except Exception:  # a gap in the positions: no event there
            continue
        (directory / "proof.json").write_text(json.dumps(proof))
        argv = sys.argv
        sys.argv = ["check_proof.py", str(directory / "proof.json"), str(directory / "keys.json")]
        try:
            began = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                runpy.run_path(str(directory / "check_proof.py"))
            checks.append((time.perf_counter() - began) * 1000)
        finally:
            sys.argv = argv
    checks.sort()
    sealed_ledger.close()
    return {
        "rate": report.events / verify_seconds,
        "events": report.events,
        "checkpoints": report.checkpoints,
        "ingest_without": baseline["rate"],
        "ingest_with_sealer": sealed["rate"],
        "ingest_ratio": sealed["rate"] / baseline["rate"],
        "sealer_behind_at_end_s": behind_seconds,
        "proof_p50_ms": checks[len(checks) // 2],
        "proof_p99_ms": checks[int(len(checks) * 0.99) - 1 if len(checks) >= 100 else -1],
        "proofs": len(checks),
    }


def chain_figure(sizes: Sizes, kind: str) -> dict[str, Any]:
    runs = []
    for _ in range(sizes.runs):
        with fresh_store(kind) as url, fresh_store(kind) as baseline_url:
            runs.append(run_child(measure_chain, url=url, baseline_url=baseline_url, pilgrims=sizes.chain, proofs=200))
    return {**summarise(runs), "when": now()}
