"""The reference system's package verifier, re-stated from cavra-spec §4.1 and §4.2 for tests.

Independent of Ringward's verifier: it checks exactly what the reference's ``verify-go-package``
and ``verify-airgap-bundle`` check (self-certifying signatures, no trust root, extra files
ignored), so tests can show that a Ringward-built package passes every check a fleet still running
the reference verifier makes. Returns the list of error strings (empty: the reference accepts).
"""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

CI_CONTROLS = (
    "verified-signed-runtime-before-runner-use", "runner-authentication-claims-signed",
    "runner-authentication-oidc-verified", "runner-oidc-provider-token-acquisition",
    "daemon-evidence-stream-hmac-signed", "daemon-evidence-stream-verifier-cli",
    "evidence-verification-artifact-published", "runner-evidence-key-custody-documented",
    "blocking-decision-fails-closed-by-default",
)


class Refused(Exception):
    pass


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _inside(root: Path, relative: str) -> Path | None:
    if not relative or relative.startswith("/"):
        return None
    path = (root / relative).resolve()
    return path if path.is_relative_to(root.resolve()) else None


def _json(path: Path, label: str) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise Refused(f"invalid {label} JSON: {exc}") from exc


def _binary(root: Path, checksums: dict[str, str], binary: str, sha: str, label: str) -> None:
    path = _inside(root, binary)
    if path is None or not path.is_file():
        raise Refused(f"{label} binary is missing: {binary}")
    if _sha(path) != sha:
        raise Refused(f"{label} digest mismatch for {binary}")
    if checksums.get(binary) and checksums[binary] != sha:
        raise Refused(f"{label} disagrees with checksums.txt: {binary}")


def _installers(root: Path, checksums: dict[str, str], evidence: dict[str, Any]) -> dict[str, Any]:
    path = root / "cavra-runtime.installers.json"
    if not path.is_file():
        raise Refused("missing cavra-runtime.installers.json")
    doc = _json(path, "installer metadata")
    if doc.get("schema_version") != "cavra.go-runtime.installers.v1":
        raise Refused("installer metadata has an invalid schema_version")
    if doc.get("version") != evidence.get("version"):
        raise Refused("installer metadata version does not match release evidence")
    targets = doc.get("targets")
    if not isinstance(targets, list) or not targets:
        raise Refused("installer metadata has no targets")
    by_target: dict[str, Any] = {}
    for t in targets:
        if not isinstance(t, dict):
            raise Refused("installer metadata target is invalid")
        name = t.get("target")
        if not name or name in by_target:
            raise Refused(f"installer metadata target is missing or duplicated: {name}")
        _binary(root, checksums, str(t.get("binary")), str(t.get("binary_sha256")), "installer metadata")
        if not t.get("install_path") or not t.get("install_method"):
            raise Refused(f"installer metadata target is missing install guidance: {name}")
        if "sha256sum -c checksums.txt" not in str(t.get("verification_command", "")):
            raise Refused(f"installer metadata target is missing checksum verification guidance: {name}")
        by_target[name] = t
    return by_target


def _endpoint(root: Path, checksums: dict[str, str], evidence: dict[str, Any],
              installers: dict[str, Any]) -> dict[str, Any]:
    path = root / "cavra-runtime.endpoint-deployment.json"
    if not path.is_file():
        raise Refused("missing cavra-runtime.endpoint-deployment.json")
    doc = _json(path, "endpoint deployment")
    if doc.get("schema_version") != "cavra.go-runtime.endpoint-deployment.v1" or \
            doc.get("version") != evidence.get("version"):
        raise Refused("endpoint deployment metadata has an invalid schema_version or version")
    if doc.get("source_metadata") != "cavra-runtime.installers.json":
        raise Refused("endpoint deployment metadata must reference cavra-runtime.installers.json")
    if "smoke-installers-before-rollout" not in doc.get("controls", []):
        raise Refused("endpoint deployment metadata is missing smoke installer rollout control")
    targets: dict[str, Any] = {}
    for t in doc.get("deployment_targets") or []:
        tid = t.get("id")
        if not tid or tid in targets:
            raise Refused(f"endpoint deployment target is missing or duplicated: {tid}")
        installer = installers.get(t.get("installer_target"))
        if installer is None:
            raise Refused("endpoint deployment target references unknown installer target: "
                          f"{t.get('installer_target')}")
        if t.get("binary") != installer.get("binary"):
            raise Refused(f"endpoint deployment binary does not match installer metadata: {tid}")
        _binary(root, checksums, str(t.get("binary")), str(t.get("binary_sha256")), "endpoint deployment")
        for key in ("surface", "platform", "deployment_channel", "management_tool", "install_path", "install_command"):
            if not t.get(key):
                raise Refused(f"endpoint deployment target is missing deployment guidance: {tid}")
        commands = t.get("verification_commands") or []
        if not any("cavra release verify-go-package" in c for c in commands):
            raise Refused(f"endpoint deployment target is missing package verification guidance: {tid}")
        if not any("cavra release smoke-installers" in c for c in commands):
            raise Refused(f"endpoint deployment target is missing smoke installer guidance: {tid}")
        targets[tid] = t
    if not targets:
        raise Refused("endpoint deployment metadata has no deployment targets")
    return targets


def _ci_bundles(root: Path, checksums: dict[str, str], evidence: dict[str, Any], endpoint: dict[str, Any]) -> None:
    path = root / "cavra-runtime.ci-runner-bundles.json"
    if not path.is_file():
        raise Refused("missing cavra-runtime.ci-runner-bundles.json")
    doc = _json(path, "CI runner bundle")
    if doc.get("schema_version") != "cavra.go-runtime.ci-runner-bundles.v1" or \
            doc.get("version") != evidence.get("version"):
        raise Refused("CI runner bundle metadata has an invalid schema_version or version")
    if doc.get("source_metadata") != "cavra-runtime.endpoint-deployment.json":
        raise Refused("CI runner bundle metadata must reference cavra-runtime.endpoint-deployment.json")
    for label, key in (("runner script", "runner_script"), ("GitHub action", "github_action")):
        ref = doc.get(key) or {}
        file = _inside(root, str(ref.get("path", "")))
        if file is None or not file.is_file():
            raise Refused(f"CI runner {label} is missing: {ref.get('path')}")
        if _sha(file) != ref.get("sha256"):
            raise Refused(f"CI runner {label} digest mismatch: {ref.get('path')}")
        if checksums.get(ref["path"]) and checksums[ref["path"]] != ref.get("sha256"):
            raise Refused(f"CI runner {label} disagrees with checksums.txt: {ref.get('path')}")
    if "CAVRA_RELEASE_GOVERNANCE_REQUEST" not in doc["runner_script"].get("required_environment", []):
        raise Refused("CI runner script must require CAVRA_RELEASE_GOVERNANCE_REQUEST")
    missing = [c for c in CI_CONTROLS if c not in doc.get("controls", [])]
    if missing:
        raise Refused(f"CI runner bundle metadata is missing control: {missing[0]}")
    bundles = doc.get("runner_bundles") or []
    if not bundles:
        raise Refused("CI runner bundle metadata has no runner bundles")
    for b in bundles:
        target = endpoint.get(b.get("deployment_target"))
        if not b.get("platform") or target is None or target.get("surface") != "ci-runner":
            raise Refused(f"CI runner bundle references unknown ci-runner target: {b.get('deployment_target')}")
        if b.get("runtime_binary") != target.get("binary"):
            raise Refused("CI runner bundle binary does not match deployment target")
        _binary(root, checksums, str(b.get("runtime_binary")), str(b.get("runtime_binary_sha256")), "CI runner bundle")
        wrapper = _inside(root, str(b.get("reusable_wrapper", "")))
        if wrapper is None or not wrapper.is_file():
            raise Refused(f"CI runner bundle wrapper is missing: {b.get('reusable_wrapper')}")
        commands = b.get("verification_commands") or []
        if not any("cavra release verify-go-package" in c for c in commands) or \
                not any("gh attestation verify" in c for c in commands):
            raise Refused("CI runner bundle is missing verification commands")
        if not any("release-governance-evidence.jsonl" in o for o in b.get("required_outputs") or []):
            raise Refused("CI runner bundle is missing evidence outputs")


def _channels(root: Path, checksums: dict[str, str], evidence: dict[str, Any]) -> None:
    manifest = _json(root / "cavra-runtime.channels.json", "channel manifest")
    policy = _json(root / "cavra-runtime.updater-policy.json", "updater policy")
    if manifest.get("schema_version") != "cavra.go-runtime.channels.v1" or \
            manifest.get("version") != evidence.get("version"):
        raise Refused("channel manifest has an invalid schema_version or version")
    if manifest.get("source_metadata") != "cavra-runtime.endpoint-deployment.json" or \
            manifest.get("updater_policy") != "cavra-runtime.updater-policy.json":
        raise Refused("channel manifest references the wrong documents")
    names = set()
    for ch in manifest.get("channels") or []:
        name = ch.get("channel")
        if not name or name in names:
            raise Refused(f"channel is missing or duplicated: {name}")
        names.add(name)
        if ch.get("auto_update") is not False or ch.get("approval_required") is not True:
            raise Refused(f"channel {name} must require approval and disable auto_update")
        if "verify-go-package-before-channel-publish" not in ch.get("controls", []):
            raise Refused(f"channel {name} is missing package verification controls")
        commands = ch.get("verification_commands") or []
        if not any("cavra release verify-go-package" in c for c in commands) or \
                not any("cavra release smoke-installers" in c for c in commands):
            raise Refused(f"channel {name} is missing verification commands")
        if not ch.get("workstation_targets"):
            raise Refused(f"channel {name} has no workstation targets")
        for t in ch["workstation_targets"]:
            _binary(root, checksums, str(t.get("binary")), str(t.get("binary_sha256")), f"channel {name}")
            if not all(t.get(k) for k in ("id", "platform", "installer_target", "deployment_channel",
                                          "management_tool")):
                raise Refused(f"channel {name} target is missing deployment guidance")
    if not names:
        raise Refused("channel manifest has no channels")
    if policy.get("schema_version") != "cavra.go-runtime.updater-policy.v1" or \
            policy.get("version") != evidence.get("version"):
        raise Refused("updater policy has an invalid schema_version or version")
    if policy.get("source_channel_manifest") != "cavra-runtime.channels.json" or \
            policy.get("default_auto_update") is not False or \
            "manual-approval-before-auto-update" not in policy.get("controls", []):
        raise Refused("updater policy is missing its controls")
    policies = policy.get("policies") or []
    if {p.get("channel") for p in policies} != names:
        raise Refused("updater policy channels must match channel manifest channels")
    for p in policies:
        if p.get("auto_update") is not False or p.get("approval_required") is not True or \
                not p.get("rollout_rings") or (p.get("rollback") or {}).get("required") is not True:
            raise Refused(f"updater policy {p.get('channel')} is not staged with approval and rollback")


def _provenance(root: Path, checksums: dict[str, str], evidence: dict[str, Any]) -> None:
    path = root / "cavra-runtime.provenance.intoto.json"
    if not path.is_file():
        raise Refused("missing cavra-runtime.provenance.intoto.json")
    doc = _json(path, "SLSA provenance")
    if doc.get("_type") != "https://in-toto.io/Statement/v1" or \
            doc.get("predicateType") != "https://slsa.dev/provenance/v1":
        raise Refused("SLSA provenance has an invalid _type or predicateType")
    build = (doc.get("predicate") or {}).get("buildDefinition") or {}
    run = (doc.get("predicate") or {}).get("runDetails") or {}
    if not build.get("buildType") or not (run.get("builder") or {}).get("id"):
        raise Refused("SLSA provenance is missing buildType or builder.id")
    params = build.get("externalParameters") or {}
    if params.get("version") != evidence.get("version") or params.get("ref") != evidence.get("ref"):
        raise Refused("SLSA provenance version or ref does not match release evidence")
    for subject in doc.get("subject") or []:
        name = str(subject.get("name", ""))
        digest = (subject.get("digest") or {}).get("sha256")
        file = _inside(root, name)
        if not digest or file is None or not file.is_file():
            raise Refused(f"SLSA provenance subject is missing: {name}")
        if _sha(file) != digest:
            raise Refused(f"SLSA provenance digest mismatch for {name}")
        if checksums.get(name) and checksums[name] != digest:
            raise Refused(f"SLSA provenance subject disagrees with checksums.txt: {name}")


def _signature(root: Path, sig_path: Path) -> str:
    payload = _json(sig_path, f"signature {sig_path.name}")
    subject = str(payload.get("subject", ""))
    path = _inside(root, subject)
    if path is None:
        raise Refused(f"signature {sig_path.name} has an invalid subject")
    if not path.is_file():
        raise Refused(f"signature subject is missing: {subject}")
    if payload.get("schema_version") != "cavra.go-release.signature.v1" or payload.get("algorithm") != "Ed25519":
        raise Refused(f"signature {sig_path.name} has an invalid schema_version or algorithm")
    pem = str(payload.get("public_key_pem", "")).encode()
    if hashlib.sha256(pem).hexdigest() != payload.get("public_key_sha256"):
        raise Refused(f"signature {sig_path.name} public key fingerprint mismatch")
    if _sha(path) != payload.get("subject_sha256"):
        raise Refused(f"signature subject checksum mismatch: {subject}")
    try:
        serialization.load_pem_public_key(pem).verify(  # type: ignore[union-attr,call-arg]
            base64.b64decode(str(payload.get("value", "")), validate=True), path.read_bytes())
    except (InvalidSignature, ValueError) as exc:
        raise Refused(f"invalid Ed25519 signature for {subject}") from exc
    return subject


def verify_go_package(root: Path) -> tuple[list[str], list[str]]:
    """(errors, verified checksum artifacts) of ``cavra release verify-go-package`` (strict flags)."""
    if not root.is_dir():
        return [f"package directory does not exist: {root}"], []
    errors: list[str] = []
    evidence: dict[str, Any] = {}
    evidence_path = root / "release-evidence.json"
    if not evidence_path.is_file():
        errors.append("missing release-evidence.json")
    else:
        evidence = json.loads(evidence_path.read_text())
        if evidence.get("schema_version") != "cavra.go-release.evidence.v1":
            errors.append("release-evidence.json has an invalid schema_version")
    checksums: dict[str, str] = {}
    verified: list[str] = []
    if not (root / "checksums.txt").is_file():
        errors.append("missing checksums.txt")
    else:
        for number, line in enumerate((root / "checksums.txt").read_text().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split(maxsplit=1)
            if len(parts) != 2 or len(parts[0]) != 64:
                errors.append(f"invalid checksums.txt line {number}")
                continue
            name = parts[1].strip()
            checksums[name] = parts[0].lower()
            file = _inside(root, name)
            if file is None:
                errors.append(f"checksum path escapes package directory: {name}")
            elif not file.is_file():
                errors.append(f"checksum artifact is missing: {name}")
            elif _sha(file) != checksums[name]:
                errors.append(f"checksum mismatch for {name}")
            else:
                verified.append(name)
    artifacts = {a["relative_path"] for a in evidence.get("artifacts", []) if isinstance(a, dict)}
    errors += [f"evidence artifact missing from checksums.txt: {p}" for p in sorted(artifacts)
               if p != "checksums.txt" and p not in checksums]
    try:
        installers = _installers(root, checksums, evidence)
    except Refused as exc:
        errors.append(str(exc))
        installers = {}
    try:
        endpoint = _endpoint(root, checksums, evidence, installers)
    except Refused as exc:
        errors.append(str(exc))
        endpoint = {}
    for check in (lambda: _ci_bundles(root, checksums, evidence, endpoint),
                  lambda: _channels(root, checksums, evidence),
                  lambda: _provenance(root, checksums, evidence)):
        try:
            check()
        except Refused as exc:
            errors.append(str(exc))
    signed: set[str] = set()
    sigs = sorted(root.rglob("*.sig.json"))
    if not sigs:
        errors.append("no detached signature files found")
    for sig in sigs:
        try:
            signed.add(_signature(root, sig))
        except Refused as exc:
            errors.append(str(exc))
    if evidence:
        errors += [f"missing detached signature for {s}" for s in sorted(artifacts | {"release-evidence.json"})
                   if s not in signed]
    return errors, verified


def verify_airgap_bundle(bundle: Path) -> list[str]:
    """``cavra release verify-airgap-bundle`` with ``--require-bootstrap``."""
    try:
        archive = zipfile.ZipFile(bundle)
    except zipfile.BadZipFile:
        return [f"air-gapped bundle is not a zip archive: {bundle}"]
    with archive, tempfile.TemporaryDirectory(prefix="cavra-airgap-") as tmp:
        names = archive.namelist()
        if any(not n or n.startswith(("/", "\\")) or ".." in Path(n).parts for n in names):
            return ["unsafe archive member path"]
        tops = {n.split("/", 1)[0] for n in names}
        if len(tops) != 1 or not next(iter(tops)).startswith("go-runtime-"):
            return ["air-gapped bundle must contain exactly one go-runtime-* package directory"]
        archive.extractall(tmp)  # the reference's own behaviour, on our own test zip
        root = Path(tmp) / tops.pop()
        errors, verified = verify_go_package(root)
        if "offline-trust-root-bootstrap.json" not in verified:
            return [*errors, "offline-trust-root-bootstrap.json is missing from checksums.txt"]
        bootstrap = json.loads((root / "offline-trust-root-bootstrap.json").read_text())
        if bootstrap.get("schema_version") != "cavra.offline-trust-bootstrap.v1" or \
                bootstrap.get("mode") != "air_gapped":
            errors.append("offline trust bootstrap has an invalid schema_version or mode")
        for name in bootstrap.get("required_files") or ["<none>"]:
            if not (root / name).is_file():
                errors.append(f"offline bootstrap required file is missing: {name}")
        commands = bootstrap.get("verification_commands") or []
        for marker in ("cavra release verify-go-package", "cavra release verify-airgap-bundle"):
            if not any(marker in c for c in commands):
                errors.append(f"offline trust bootstrap must include {marker} guidance")
        return errors
