"""Cost of verifying a keyless (Sigstore identity) attestation, beside a key-signed one (issues 23, 24).

    python3 benchmarks/keyless_bench.py --runs 200

Starts the rig's OIDC provider (rig/oidc.sh) and local Sigstore stand-in (tests/sigstorerig.py),
signs one SLSA v1 provenance statement keyless with sigstore-python's ``Signer`` and the same
statement into a DSSE envelope with a P-256 key (tests/signrig.py), then times what admission
runs per bundle when the decision cache has no answer: ``signing.bundle_statement`` (sigstore's
``Verifier.verify_dsse``: certificate chain at the log's time, SCT, identity policy, inclusion
proof and checkpoint, signed entry timestamp, DSSE signature) and, for the key, the DSSE
signature check of ``attestations``; plus loading the trust root into a ``Verifier`` (done once per
trust-root file, then cached).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from timing import timed  # noqa: E402

import signrig  # noqa: E402
import sigstorerig  # noqa: E402
from oidcrig import IdP  # noqa: E402

from hardened_spawner.admission import attestations, evidence, signing  # noqa: E402


def shown(fn, runs):
    return "{:.2f} ms / {:.2f} ms".format(*timed(fn, runs))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="keyless-bench-"))
    idp = IdP(work / "idp.log").start()
    instance = sigstorerig.Sigstore(work, [idp.issuer]).start()
    try:
        kind, predicate = signrig.provenance("https://ci.example.org/builder", "https://git.example.org/x",
                                             "refs/heads/main")
        statement = signrig.statement("sha256:" + "a" * 64, kind, predicate)
        bundle = instance.sign_statement(sigstorerig.identity_token(idp, "alice"), statement)
        root = str(instance.write_trusted_root())
    finally:
        instance.stop()
        idp.stop()
    private, public = signrig.key_pair(work, "ci")
    envelope = signrig.envelope(statement, private)
    keys = [(str(public), evidence._read_key(str(public)))]
    identities = [(idp.issuer, "alice@example.org")]
    verifier, policy, problem = evidence.sigstore_verifier(identities, root)
    assert not problem, problem
    assert signing.bundle_statement(bundle, verifier, policy)[1] == "alice@example.org"
    assert attestations._envelope_statement(envelope, keys)[1] == str(public)
    print(f"runs {args.runs}, bundle {len(bundle)} bytes, envelope {len(envelope)} bytes, "
          f"1-min load {os.getloadavg()[0]:.1f}")
    print("keyless bundle_statement (median / p95):", shown(lambda: signing.bundle_statement(bundle, verifier, policy),
                                                              args.runs))
    print("key DSSE envelope check (median / p95):", shown(lambda: attestations._envelope_statement(envelope, keys),
                                                            args.runs))
    print("trust root -> Verifier, uncached (median / p95):",
          shown(lambda: evidence._verifier.__wrapped__(root, None), max(args.runs // 10, 5)))


if __name__ == "__main__":
    main()
