"""schemathesis over every service's OpenAPI, through the gateway of the running embedded platform.

Bounded and repeatable: a fixed seed, deterministic generation, the schema's examples and a few generated cases
(valid and invalid) per operation, so the module stays within a few minutes on two cores. schemathesis' coverage
phase (every boundary and wrong-type value of every parameter: about 12,000 cases for the catalog alone) is left to
deliberate runs: `schemathesis run --phases examples,coverage,fuzzing`. Requests carry the admin API key, so the
routes behind a role are fuzzed too. Checks: no server error, every status code and
content type documented by the operation. What each run did is in its JSON report (kept on failure).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eolake_spec import manifests
from servers import RunningPlatform as Platform

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
SEED = 20261129
MAX_EXAMPLES = 3
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance"
SERVICES = [name for name, m in manifests().items() if m.openapi]


def fuzz(platform: Platform, service: str, reports: Path) -> dict:
    m = manifests()[service]
    base = platform.base_url + m.path.rstrip("/")
    report = reports / f"{service}.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "run",
        base + m.openapi,
        "--url",
        base,
        "-H",
        f"X-API-Key: {platform.key('admin')}",
        "--generation-with-security-parameters",
        "false",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-deterministic",
        "--workers",
        "1",
        "--no-shrink",
        "--continue-on-failure",
        "--request-timeout",
        "60",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    run = subprocess.run(command, cwd=reports, capture_output=True, text=True, timeout=600)
    assert report.exists(), f"schemathesis wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    return {"output": run.stdout, **json.loads(report.read_text())}


@pytest.mark.parametrize("service", SERVICES)
def test_no_server_error_and_nothing_undocumented(scratch_platform: Platform, service: str, tmp_path: Path):
    # With the admin key the fuzzer creates, replaces and deletes what it likes: on the scratch platform.
    result = fuzz(scratch_platform, service, tmp_path)
    cases = result["test_cases"]
    print(f"\n[fuzz] {service}: {result['operations']['tested']} operations, {cases['generated']} cases")
    assert result["operations"]["tested"] >= 1 and cases["generated"] >= result["operations"]["tested"], result[
        "output"
    ][-3000:]
    failures = {f"{f['code']} {f['title']}": f.get("operations") for f in result["failures"]}
    assert not failures and not result["errors"], (
        f"{service}: {cases['with_failures']} of {cases['generated']} cases failed: {failures}; "
        f"errors: {result['errors']}\n{result['output'][-6000:]}"
    )
