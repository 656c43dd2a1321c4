"""`ringward api --host H --port P` as a real uvicorn server over real HTTP."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ringward.core.common.roles import Role
from ringward.store import open_store
from tests.api.conftest import write_bundle


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_real_server_serves_authenticated_routes_and_verified_files(db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    artifacts = write_bundle(root, "bundles/one", {"report.json": b'{"ok": true}\n'})
    with open_store(db_url) as store:
        from ringward.core.evidence.records import EvidenceDraft

        record = store.append(
            EvidenceDraft(kind="k", actor="a", payload={}, bundle_dir="bundles/one", artifacts=artifacts)
        )
        _, secret = store.tokens.create(name="auditor", role=Role.VIEWER, created_by="t", now=datetime.now(UTC))
    port = _free_port()
    env = {
        **os.environ,
        "RINGWARD_HOME": str(tmp_path / "home"),
        "RINGWARD_DATABASE_URL": db_url,
        "RINGWARD_EVIDENCE_ARTIFACT_ROOT": str(root),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "ringward", "api", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert httpx.get(f"{base}/evidence", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {secret}"}
        assert httpx.get(f"{base}/evidence", headers=auth, timeout=5).json()["total"] == 2
        download = httpx.get(f"{base}/evidence/{record.id}/artifacts/report.json", headers=auth, timeout=5)
        assert download.status_code == 200 and download.content == b'{"ok": true}\n'
        assert download.headers["x-ringward-artifact-sha256"] == hashlib.sha256(download.content).hexdigest()
        refused = httpx.post(f"{base}/approvals", headers=auth, json={"action": "a"}, timeout=5)
        assert refused.status_code == 403
        raw = httpx.get(f"{base}/evidence/{record.id}/artifacts/..%2F..%2F..%2Fetc%2Fpasswd", headers=auth, timeout=5)
        assert raw.status_code == 404
        assert httpx.get(f"{base}/openapi.json", timeout=5).status_code == 401
        assert httpx.get(f"{base}/openapi.json", headers=auth, timeout=5).json()["info"]["title"] == "Ringward API"
        assert httpx.get(f"{base}/docs", timeout=5).status_code == 404
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert b"Traceback" not in (server.stderr.read() if server.stderr else b"")
