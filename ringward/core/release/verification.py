"""Verification results: frozen, with specific error codes per check family."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ringward.core.errors import RingwardError, VerificationError
from ringward.core.release.profiles import ProfileChoice

FamilyStatus = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    error_type: str

    @classmethod
    def of(cls, error: RingwardError) -> Finding:
        return cls(error.code, error.message, type(error).__name__)

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "error_type": self.error_type}


@dataclass(frozen=True)
class FamilyResult:
    family: str
    status: FamilyStatus
    errors: tuple[Finding, ...] = ()
    warnings: tuple[str, ...] = ()
    checked: tuple[str, ...] = ()
    #: why a family was skipped
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "status": self.status,
            "reason": self.reason,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": list(self.warnings),
            "checked": list(self.checked),
        }


class Skip(Exception):
    """Raised inside a family when a prerequisite (e.g. a document's integrity) already failed."""


@dataclass
class FamilyCollector:
    """Collects errors and warnings while a family runs."""

    family: str
    errors: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    def fail(self, error: RingwardError) -> None:
        self.errors.append(Finding.of(error))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def result(self, skipped: str | None = None) -> FamilyResult:
        if skipped is not None and not self.errors:
            return FamilyResult(self.family, "skipped", (), tuple(self.warnings), tuple(self.checked), skipped)
        status: FamilyStatus = "failed" if self.errors else "passed"
        return FamilyResult(self.family, status, tuple(self.errors), tuple(self.warnings), tuple(self.checked))


def run_family(family: str, check: Callable[[FamilyCollector], None]) -> FamilyResult:
    """Run ``check``; a raised VerificationError ends the family (first-error semantics for
    sub-validators), ``Skip`` marks it skipped."""
    collector = FamilyCollector(family)
    try:
        check(collector)
    except Skip as skip:
        return collector.result(skipped=str(skip))
    except VerificationError as exc:
        collector.fail(exc)
    return collector.result()


@dataclass(frozen=True)
class PackageVerification:
    """Result of ``verify-package``: one entry per check family."""

    package: str
    version: str | None
    runtime: str | None
    families: tuple[FamilyResult, ...]
    unsigned: bool = False
    verified_files: tuple[str, ...] = ()
    signers: tuple[str, ...] = ()
    #: the profile the package was verified under and how it was chosen (None: the default)
    profile: ProfileChoice | None = None
    #: what to do instead, when a refusal is likely a profile mismatch
    hint: str | None = None

    @property
    def profile_name(self) -> str:
        return self.profile.profile.value if self.profile else "ringward"

    @property
    def valid(self) -> bool:
        return all(f.status != "failed" for f in self.families) and not any(
            f.status == "skipped" for f in self.families if f.family != "ci-runner-bundles"
        )

    @property
    def errors(self) -> list[Finding]:
        return [e for f in self.families for e in f.errors]

    @property
    def warnings(self) -> list[str]:
        return [w for f in self.families for w in f.warnings]

    def error_codes(self) -> set[str]:
        return {e.code for e in self.errors}

    def raise_first(self) -> None:
        """Raise the first error as its specific exception type (for callers that prefer raising)."""
        from ringward.core import errors as error_module

        for finding in self.errors:
            cls = getattr(error_module, finding.error_type, VerificationError)
            raise cls(finding.message)
        if not self.valid:
            raise VerificationError(f"{self.package}: verification incomplete (a check family was skipped)")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "ringward.package-verification.v1",
            "package": self.package,
            "valid": self.valid,
            "version": self.version,
            "runtime": self.runtime,
            "unsigned": self.unsigned,
            "errors": [e.to_dict() for e in self.errors],
            "warnings": self.warnings,
            "families": [f.to_dict() for f in self.families],
            "verified_files": list(self.verified_files),
            "signers": list(self.signers),
            "profile": self.profile.to_dict() if self.profile else {"name": "ringward", "source": "default",
                                                                     "reason": None, "looks_like": None},
            "profile_announcement": self.profile.announcement() if self.profile else "profile ringward",
            "hint": self.hint,
        }
