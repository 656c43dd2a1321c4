"""A private, offline Sigstore instance built with ``cryptography``, for the keyless-attestation tests.

What it makes is what sigstore-python 4.x checks offline (``sigstore.verify.verifier.Verifier``):

- a Fulcio-like CA: a root and an intermediate (P-256, webpki-shaped extensions) and, per signature, a
  short-lived leaf with an empty subject, the identity as a critical SAN, code-signing EKU,
  digitalSignature KU, the OIDC issuer in both ``1.3.6.1.4.1.57264.1.1`` (raw bytes) and ``.1.8``
  (DER UTF8String), and one embedded precertificate SCT signed by a CT-log key over the RFC 6962
  ``digitally-signed`` structure (issuer key hash + the TBS without the SCT list);
- a Rekor-like log: ``hashedrekord`` 0.0.1 entries in an RFC 6962 Merkle tree (with filler entries, so
  the inclusion proofs are not trivial), a signed entry timestamp (inclusion promise) over the
  canonical ``{body, integratedTime, logID, logIndex}`` and a signed checkpoint (a signed note) over the
  tree head;
- DSSE bundles too (an in-toto Statement over the binary's digest, logged as a ``dsse`` 0.0.1 entry), as
  GitHub's artifact attestations are;
- a ``trusted_root.json`` (``application/vnd.dev.sigstore.trustedroot+json;version=0.1``) naming the CA
  chain, the log key and the CT-log key, and bundles in the v0.3 media type.

Nothing here talks to a network or uses sigstore-python to build anything, so the verifier under test
checks material it did not produce.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT_MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
OIDC_ISSUER_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OIDC_ISSUER_V2_OID = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
SCT_LIST_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

#: when the fixture's "now" is: a fixed moment, so bundles are reproducible in shape
SIGNED_AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
IDENTITY = "https://github.com/acme/runtime/.github/workflows/release.yml@refs/tags/v1.2.3"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def spki_der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: ec.EllipticCurvePublicKey) -> bytes:
    """Sigstore / RFC 6962 log id: SHA-256 of the DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(key)).digest()


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def der_octet_string(data: bytes) -> bytes:
    return b"\x04" + _der_length(len(data)) + data


def der_utf8_string(text: str) -> bytes:
    data = text.encode()
    return b"\x0c" + _der_length(len(data)) + data


def canonical_json(value: Any) -> bytes:
    """RFC 8785 for the plain ASCII strings and integers used here: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# --- RFC 6962 Merkle tree -----------------------------------------------------------------------


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def tree_root(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return node_hash(tree_root(leaves[:k]), tree_root(leaves[k:]))


def inclusion_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), ordered from the leaf's level upwards."""
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), tree_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), tree_root(leaves[:k])]


# --- the instance ---------------------------------------------------------------------------------


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _ca_cert(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
             issuer_key: ec.EllipticCurvePrivateKey, start: datetime, path_length: int | None) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if path_length == 0:  # the intermediate, as Fulcio's: it may also sign code-signing leaves
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class LogEntry:
    body: bytes
    integrated_time: int
    index: int = -1


@dataclass
class Signed:
    """One signature before it is put in the log: leaf certificate, signature, artifact digest."""

    certificate: x509.Certificate
    signature: bytes
    digest: bytes
    entry: LogEntry
    #: a DSSE envelope (an attestation) instead of a message signature
    envelope: dict[str, Any] | None = None


@dataclass
class SigstoreInstance:
    """A Fulcio-like CA, a CT log and a Rekor-like log, with their trusted root."""

    name: str = "ringward-test"
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)
    intermediate_key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)
    log_key: ec.EllipticCurvePrivateKey = field(default_factory=_new_key)
    #: entries already in the log before ours (their bodies are opaque filler)
    filler: int = 5

    def __post_init__(self) -> None:
        org = f"{self.name}.test"
        self.root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                    x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} root")])
        self.intermediate_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                                            x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name} intermediate")])
        self.root_cert = _ca_cert(self.root_name, self.root_key, self.root_name, self.root_key, self.start, 1)
        self.intermediate_cert = _ca_cert(self.intermediate_name, self.intermediate_key, self.root_name,
                                          self.root_key, self.start, 0)
        self.log: list[bytes] = [canonical_json({"filler": i, "log": self.name}) for i in range(self.filler)]
        self.log_origin = f"rekor.{self.name}.test - 2605736670972794746"

    # --- trusted root ---------------------------------------------------------------------------

    def trusted_root(self) -> dict[str, Any]:
        start = self.start.strftime("%Y-%m-%dT%H:%M:%SZ")

        def log_instance(url: str, key: ec.EllipticCurvePrivateKey) -> dict[str, Any]:
            public = key.public_key()
            return {"baseUrl": url, "hashAlgorithm": "SHA2_256",
                    "publicKey": {"rawBytes": b64(spki_der(public)), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                  "validFor": {"start": start}},
                    "logId": {"keyId": b64(key_id(public))}}

        return {
            "mediaType": TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [log_instance(f"https://rekor.{self.name}.test", self.log_key)],
            "certificateAuthorities": [{
                "subject": {"organization": f"{self.name}.test", "commonName": f"{self.name} intermediate"},
                "uri": f"https://fulcio.{self.name}.test",
                "certChain": {"certificates": [
                    {"rawBytes": b64(self.intermediate_cert.public_bytes(serialization.Encoding.DER))},
                    {"rawBytes": b64(self.root_cert.public_bytes(serialization.Encoding.DER))},
                ]},
                "validFor": {"start": start},
            }],
            "ctlogs": [log_instance(f"https://ctfe.{self.name}.test", self.ct_key)],
            "timestampAuthorities": [],
        }

    def trusted_root_bytes(self) -> bytes:
        return (json.dumps(self.trusted_root(), indent=2) + "\n").encode()

    # --- Fulcio ---------------------------------------------------------------------------------

    def _leaf_builder(self, public: ec.EllipticCurvePublicKey, identity: str, issuer: str, at: datetime,
                      serial: int) -> x509.CertificateBuilder:
        san: x509.GeneralName = (x509.RFC822Name(identity) if "@" in identity and "://" not in identity
                                 else x509.UniformResourceIdentifier(identity))
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_name)
            .public_key(public)
            .serial_number(serial)
            .not_valid_before(at)
            .not_valid_after(at + timedelta(minutes=10))
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.intermediate_key.public_key()),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_OID, issuer.encode()), critical=False)
            .add_extension(x509.UnrecognizedExtension(OIDC_ISSUER_V2_OID, der_utf8_string(issuer)), critical=False)
        )

    def _sct_list(self, tbs_precert: bytes, at: datetime) -> bytes:
        """An RFC 6962 SignedCertificateTimestampList with one precertificate SCT by the CT log."""
        timestamp = int(at.timestamp() * 1000)
        extensions = b""
        issuer_key_hash = key_id(self.intermediate_key.public_key())
        signed_entry = issuer_key_hash + len(tbs_precert).to_bytes(3, "big") + tbs_precert
        digitally_signed = (struct.pack("!BBQH", 0, 0, timestamp, 1) + signed_entry
                            + struct.pack("!H", len(extensions)) + extensions)
        signature = self.ct_key.sign(digitally_signed, ec.ECDSA(hashes.SHA256()))
        sct = (b"\x00" + key_id(self.ct_key.public_key()) + struct.pack("!Q", timestamp)
               + struct.pack("!H", len(extensions)) + extensions
               + b"\x04\x03" + struct.pack("!H", len(signature)) + signature)
        serialized = struct.pack("!H", len(sct)) + sct
        return struct.pack("!H", len(serialized)) + serialized

    def issue(self, public: ec.EllipticCurvePublicKey, identity: str, issuer: str, at: datetime, *,
              sct: bool = True) -> x509.Certificate:
        """A Fulcio-style leaf with an embedded SCT. The SCT signs the TBS without the SCT list, so the
        leaf is built once with a placeholder list, its precertificate TBS taken, then rebuilt.
        ``sct=False``: a leaf the CA issued but never logged to CT (mis-issuance)."""
        serial = x509.random_serial_number()
        builder = self._leaf_builder(public, identity, issuer, at, serial)
        if not sct:
            return builder.sign(self.intermediate_key, hashes.SHA256())
        placeholder = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST_OID, der_octet_string(self._sct_list(b"\x00", at))), critical=False
        ).sign(self.intermediate_key, hashes.SHA256())
        tbs_precert = placeholder.tbs_precertificate_bytes
        leaf = builder.add_extension(
            x509.UnrecognizedExtension(SCT_LIST_OID, der_octet_string(self._sct_list(tbs_precert, at))),
            critical=False,
        ).sign(self.intermediate_key, hashes.SHA256())
        assert leaf.tbs_precertificate_bytes == tbs_precert
        return leaf

    # --- signing and the log ----------------------------------------------------------------------

    def sign(self, data: bytes, *, identity: str = IDENTITY, issuer: str = GITHUB_ISSUER,
             at: datetime = SIGNED_AT, sct: bool = True) -> Signed:
        """What ``sigstore sign`` does for one artifact: ephemeral key, leaf certificate, signature
        over the SHA-256 digest, and a ``hashedrekord`` entry body (not yet in the log)."""
        ephemeral = _new_key()
        certificate = self.issue(ephemeral.public_key(), identity, issuer, at, sct=sct)
        digest = hashlib.sha256(data).digest()
        signature = ephemeral.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = canonical_json({
            "apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {"data": {"hash": {"algorithm": "sha256", "value": digest.hex()}},
                     "signature": {"content": b64(signature), "publicKey": {"content": b64(pem)}}},
        })
        return Signed(certificate, signature, digest, LogEntry(body, int((at + timedelta(seconds=20)).timestamp())))

    def sign_statement(self, statement: dict[str, Any], *, identity: str = IDENTITY, issuer: str = GITHUB_ISSUER,
                       at: datetime = SIGNED_AT, payload_type: str = IN_TOTO_PAYLOAD_TYPE) -> Signed:
        """What ``actions/attest-build-provenance`` does: a DSSE envelope over an in-toto Statement,
        signed over its PAE, and a ``dsse`` 0.0.1 entry body (not yet in the log)."""
        ephemeral = _new_key()
        certificate = self.issue(ephemeral.public_key(), identity, issuer, at)
        payload = json.dumps(statement, separators=(",", ":")).encode()
        signature = ephemeral.sign(pae(payload_type, payload), ec.ECDSA(hashes.SHA256()))
        envelope = {"payload": b64(payload), "payloadType": payload_type, "signatures": [{"sig": b64(signature)}]}
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        body = canonical_json({
            "apiVersion": "0.0.1", "kind": "dsse",
            "spec": {"envelopeHash": {"algorithm": "sha256",
                                      "value": hashlib.sha256(canonical_json(envelope)).hexdigest()},
                     "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()},
                     "signatures": [{"signature": b64(signature), "verifier": b64(pem)}]},
        })
        entry = LogEntry(body, int((at + timedelta(seconds=20)).timestamp()))
        return Signed(certificate, signature, hashlib.sha256(payload).digest(), entry, envelope)

    def append(self, signed: list[Signed]) -> None:
        for item in signed:
            item.entry.index = len(self.log)
            self.log.append(item.entry.body)

    def checkpoint(self, size: int, root: bytes) -> str:
        note = f"{self.log_origin}\n{size}\n{b64(root)}\n"
        signature = self.log_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        hint = key_id(self.log_key.public_key())[:4]
        return f"{note}\n\u2014 rekor.{self.name}.test {b64(hint + signature)}\n"

    def bundle(self, signed: Signed) -> dict[str, Any]:
        """The v0.3 bundle for an entry already in the log, proved against the current tree head."""
        entry = signed.entry
        assert entry.index >= 0, "append() the entry to the log first"
        leaves = [leaf_hash(body) for body in self.log]
        root = tree_root(leaves)
        log_id = key_id(self.log_key.public_key())
        promise = canonical_json({"body": b64(entry.body), "integratedTime": entry.integrated_time,
                                  "logID": log_id.hex(), "logIndex": entry.index})
        content: dict[str, Any] = {"dsseEnvelope": signed.envelope} if signed.envelope is not None else {
            "messageSignature": {
                "messageDigest": {"algorithm": "SHA2_256", "digest": b64(signed.digest)},
                "signature": b64(signed.signature),
            },
        }
        return {
            "mediaType": BUNDLE_MEDIA_TYPE,
            "verificationMaterial": {
                "certificate": {"rawBytes": b64(signed.certificate.public_bytes(serialization.Encoding.DER))},
                "tlogEntries": [{
                    "logIndex": str(entry.index),
                    "logId": {"keyId": b64(log_id)},
                    "kindVersion": {"kind": json.loads(entry.body)["kind"], "version": "0.0.1"},
                    "integratedTime": str(entry.integrated_time),
                    "inclusionPromise": {
                        "signedEntryTimestamp": b64(self.log_key.sign(promise, ec.ECDSA(hashes.SHA256()))),
                    },
                    "inclusionProof": {
                        "logIndex": str(entry.index),
                        "rootHash": b64(root),
                        "treeSize": str(len(leaves)),
                        "hashes": [b64(h) for h in inclusion_path(entry.index, leaves)],
                        "checkpoint": {"envelope": self.checkpoint(len(leaves), root)},
                    },
                    "canonicalizedBody": b64(entry.body),
                }],
                "timestampVerificationData": {},
            },
            **content,
        }

    def attest(self, artifacts: dict[str, bytes], **kwargs: Any) -> dict[str, bytes]:
        """Sign several artifacts, log them together and return each one's bundle JSON bytes."""
        signed = {name: self.sign(data, **kwargs) for name, data in artifacts.items()}
        self.append(list(signed.values()))
        return {name: bundle_bytes(self.bundle(item)) for name, item in signed.items()}

    def attest_provenance(self, artifacts: dict[str, bytes], **kwargs: Any) -> dict[str, bytes]:
        """One SLSA provenance Statement per artifact (subject = its name and sha256), as DSSE bundles."""
        signed = {name: self.sign_statement(statement_for(name, data), **kwargs) for name, data in artifacts.items()}
        self.append(list(signed.values()))
        return {name: bundle_bytes(self.bundle(item)) for name, item in signed.items()}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement_for(name: str, data: bytes) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name.rsplit("/", 1)[-1], "digest": {"sha256": hashlib.sha256(data).hexdigest()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1"},
                      "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}},
    }


def bundle_bytes(bundle: dict[str, Any]) -> bytes:
    return (json.dumps(bundle, indent=2) + "\n").encode()


def package_binaries(package: Any) -> dict[str, bytes]:
    """``bin/<name>`` -> bytes for every binary of a package directory."""
    return {f"bin/{p.name}": p.read_bytes() for p in sorted((package / "bin").iterdir())
            if not p.name.endswith(".sig.json")}


def bundle_name(binary: str) -> str:
    """Where the package carries a binary's bundle (the reference's directory and suffix)."""
    return f"github-attestations/{binary.rsplit('/', 1)[-1]}.sigstore-bundle.json"


def write_bundles(package: Any, bundles: dict[str, bytes]) -> None:
    """Put ``binary -> bundle bytes`` into the package, unlisted (attested after packaging)."""
    for binary, data in bundles.items():
        target = package / bundle_name(binary)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


__all__ = ["GITHUB_ISSUER", "IDENTITY", "SIGNED_AT", "SigstoreInstance", "bundle_bytes", "bundle_name",
           "package_binaries", "statement_for", "write_bundles"]
