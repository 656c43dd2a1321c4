"""Verification profiles: Ringward's own rules, or the reference system's, under pinned trust.

``ringward`` (the default) is Ringward's full rule set. ``reference`` verifies every package the
reference system's own verifier (cavra-spec §4.1) accepts, PROVIDED every signature chains to the
pinned trust root, and nothing more. Its differences from the default, each reported:

- files the reference leaves outside every signature (``release-evidence.md``; the CI extras
  ``github-keyless-attestation.json`` and ``github-attestations/*.sigstore-bundle.json``) are
  reported "present, not covered by any signature, ignored" and never used;
- SPDX ``creationInfo.created`` in ``datetime.isoformat()`` form is accepted with a warning (the
  timestamp is normalised on a copy; the rest of the document is still validated as SPDX 2.3), a
  missing ``DESCRIBES`` relationship is a warning, and per-binary detail comes from the signed
  installers metadata instead of the SBOM;
- both CI-runner control generations are accepted (the stored packager's 5, the verifier's 9); the
  CI-runner bundle document is required, as the reference verifier requires it;
- an offline bootstrap without ``generated_at`` is accepted;
- ``release-evidence.md`` is never compared with Ringward's rendering.

``auto`` picks the profile from the documents' ``product`` (``CAVRA`` -> reference) and is always
announced, so nobody verifies under a profile they did not see.

``smoke-installers`` probes the binary the way its profile does: Ringward runs it with
``--version``-style arguments and looks for the version; the reference (cavra-spec §4.4) writes a
policy request to its stdin and requires a JSON answer carrying a known ``decision``. Either probe
can be chosen explicitly (``--probe version|reference-json``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final

from ringward.core.common.jsonio import reject_duplicate_keys
from ringward.core.errors import InputError, SmokeTestError


class Profile(StrEnum):
    RINGWARD = "ringward"
    REFERENCE = "reference"


AUTO: Final = "auto"
PROFILE_CHOICES: Final = (Profile.RINGWARD.value, Profile.REFERENCE.value, AUTO)
REFERENCE_PRODUCT: Final = "CAVRA"
REFERENCE_COMPONENT: Final = "go-enforcement-plane"

#: top-level files the reference writes outside checksums.txt and every signature (§2.0, §2.11)
REFERENCE_UNSIGNED_FILES: Final = ("release-evidence.md", "github-keyless-attestation.json")
_SIGSTORE_BUNDLE = re.compile(r"^github-attestations/[A-Za-z0-9._-]+\.sigstore-bundle\.json$")

#: the CI-runner controls the stored reference packager emits (cavra-spec §2.6, version skew)
STORED_PACKAGER_CI_CONTROLS: Final = (
    "verified-signed-runtime-before-runner-use",
    "typed-release-governance-request-required",
    "daemon-evidence-artifacts-published",
    "blocking-decision-fails-closed-by-default",
    "runner-wrapper-included-in-signed-release-package",
)

#: what spdx-tools says when a multi-package document has no DESCRIBES relationship
SPDX_NO_DESCRIBES = 'there must be at least one relationship "SPDXRef-DOCUMENT DESCRIBES ..."'

IGNORED_NOTE = "present, not covered by any signature, ignored"


def is_reference_unsigned_file(path: str) -> bool:
    """A file the reference leaves unsigned and unchecksummed by design."""
    return path in REFERENCE_UNSIGNED_FILES or _SIGSTORE_BUNDLE.match(path) is not None


def parse_profile_choice(text: str) -> str:
    """``ringward``, ``reference`` or ``auto`` (``--profile``)."""
    value = text.strip().lower()
    if value not in PROFILE_CHOICES:
        raise InputError(f"--profile: expected one of {', '.join(PROFILE_CHOICES)}, found {text!r}")
    return value


@dataclass(frozen=True)
class ProfileChoice:
    """The profile a verification runs under and how it was chosen (always reported)."""

    profile: Profile
    #: ``explicit`` (--profile NAME), ``detected`` (--profile auto found it) or ``default``
    source: str
    reason: str | None = None
    #: what the package's documents look like, whatever profile was chosen (for hints)
    looks_like: Profile | None = None

    def announcement(self) -> str:
        if self.source == "detected":
            return f"profile {self.profile.value} (detected: {self.reason})"
        if self.source == "default" and self.reason:
            return f"profile {self.profile.value} ({self.reason})"
        return f"profile {self.profile.value}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.profile.value, "source": self.source, "reason": self.reason,
                "looks_like": self.looks_like.value if self.looks_like else None}


def detect_format(documents: Mapping[str, Any]) -> tuple[Profile | None, str | None]:
    """Which system wrote a package, from its documents' ``product``/``component`` fields.

    ``documents`` maps file names to parsed (not yet verified) JSON; only the choice of rules is
    taken from them, and both profiles still require every signature to chain to the trust root.
    """
    for name, document in documents.items():
        if not isinstance(document, dict):
            continue
        product = document.get("product")
        if product == REFERENCE_PRODUCT or document.get("component") == REFERENCE_COMPONENT:
            return Profile.REFERENCE, f"{name} product {product!r}"
        if product == "Ringward":
            return Profile.RINGWARD, f"{name} product 'Ringward'"
    return None, None


def choose_profile(requested: str, documents: Mapping[str, Any]) -> ProfileChoice:
    """Resolve ``--profile`` (``ringward``, ``reference``, ``auto``) against the documents."""
    looks_like, reason = detect_format(documents)
    choice = parse_profile_choice(requested)
    if choice != AUTO:
        return ProfileChoice(Profile(choice), "explicit", None, looks_like)
    if looks_like is None:
        return ProfileChoice(Profile.RINGWARD, "default",
                             "auto: no product field found; using the default ringward profile", None)
    return ProfileChoice(looks_like, "detected", reason, looks_like)


def reference_hint() -> str:
    """What the reference profile would accept, and how to ask for it (for default-profile refusals
    of reference-format packages)."""
    return (
        "this is a reference-system (CAVRA) package; `--profile reference` (or `--profile auto`) verifies it "
        "under the same pinned trust root, accepting what the reference packager writes: an unsigned "
        "release-evidence.md and keyless-attestation files (reported and ignored), the stored packager's "
        "5 CI-runner controls, datetime.isoformat() SPDX timestamps, an SBOM without per-binary packages or "
        "DESCRIBES, and an offline bootstrap without generated_at"
    )


def normalise_spdx_created(value: object) -> str | None:
    """``creationInfo.created`` in SPDX form (``YYYY-MM-DDThh:mm:ssZ``), or None when it is not a
    parseable, offset-carrying timestamp. Sub-second precision is dropped (SPDX has none)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ci_control_generation(controls: list[str], verifier_controls: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Which CI-runner control generation ``controls`` satisfies (``verifier`` with all 9,
    ``stored-packager`` with all 5), else None and the controls missing from the nearer one."""
    present = set(controls)
    missing_new = [c for c in verifier_controls if c not in present]
    if not missing_new:
        return "verifier", []
    missing_old = [c for c in STORED_PACKAGER_CI_CONTROLS if c not in present]
    if not missing_old:
        return "stored-packager", []
    return None, missing_old if len(missing_old) < len(missing_new) else missing_new


# --- installer smoke probes (cavra-spec §4.4) -------------------------------------------------------


class SmokeProbe(StrEnum):
    #: run the binary with arguments (default ``--version``) and look for the version in its output
    VERSION = "version"
    #: the reference's protocol: a policy request on stdin, a JSON answer with a known ``decision``
    REFERENCE_JSON = "reference-json"


PROBE_CHOICES: Final = (SmokeProbe.VERSION.value, SmokeProbe.REFERENCE_JSON.value)

#: what the reference's ``smoke-installers`` writes to the binary's stdin
REFERENCE_SMOKE_REQUEST: Final = {"session_id": "installer-smoke", "action_type": "git_operation",
                                  "operation": "status", "target": "feature/installer-smoke"}
#: the decisions the reference accepts in the answer
REFERENCE_SMOKE_DECISIONS: Final = ("allow", "block", "require_approval", "warn", "audit_only",
                                    "allow_with_attestation")


def parse_probe_choice(text: str) -> SmokeProbe:
    """``version`` or ``reference-json`` (``--probe``)."""
    value = text.strip().lower()
    if value not in PROBE_CHOICES:
        raise InputError(f"--probe: expected one of {', '.join(PROBE_CHOICES)}, found {text!r}")
    return SmokeProbe(value)


def default_probe(profile: Profile) -> SmokeProbe:
    """The probe a profile uses when ``--probe`` is not given."""
    return SmokeProbe.REFERENCE_JSON if profile is Profile.REFERENCE else SmokeProbe.VERSION


def reference_smoke_request() -> bytes:
    """The stdin of the reference probe (compact JSON, as one line)."""
    return json.dumps(REFERENCE_SMOKE_REQUEST, separators=(",", ":")).encode("utf-8")


_JSON_KINDS: Final[dict[type, str]] = {list: "array", str: "string", int: "number", float: "number",
                                       bool: "boolean", type(None): "null"}


def judge_reference_smoke_output(binary: str, stdout: str) -> str:
    """The ``decision`` of a reference probe's answer, or SmokeTestError in the reference's failure
    classes (output not valid JSON, invalid decision), each one line."""
    text = stdout.strip()
    if not text:
        raise SmokeTestError(f"installer smoke output is not valid JSON for {binary}: empty output")
    try:
        answer = json.loads(text, object_pairs_hook=reject_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        detail = " ".join(str(exc).split())
        raise SmokeTestError(f"installer smoke output is not valid JSON for {binary}: {detail[:200]}") from None
    expected = f"expected one of {', '.join(REFERENCE_SMOKE_DECISIONS)}"
    if not isinstance(answer, dict):
        kind = _JSON_KINDS.get(type(answer), type(answer).__name__)
        raise SmokeTestError(f"installer smoke output has an invalid decision for {binary}: the answer is a "
                             f"JSON {kind}, not an object with a decision ({expected})")
    if "decision" not in answer:
        raise SmokeTestError(f"installer smoke output has an invalid decision for {binary}: no decision field "
                             f"({expected})")
    decision = answer["decision"]
    if not isinstance(decision, str) or decision not in REFERENCE_SMOKE_DECISIONS:
        shown = repr(decision) if len(repr(decision)) <= 80 else repr(decision)[:77] + "..."
        raise SmokeTestError(f"installer smoke output has an invalid decision for {binary}: {shown} ({expected})")
    return decision
