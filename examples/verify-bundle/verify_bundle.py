#!/usr/bin/env python3
"""Verifies an audit log bundle offline, with off-the-shelf libraries and none of auditpipe's code.

    pip install -r requirements.txt      # rfc8785 (RFC 8785 canonical JSON), cryptography (Ed25519)
    python3 verify_bundle.py BUNDLE VERIFIER_KEY [PINNED_CHECKPOINT_FILE]

It follows docs/integrity.md: the bundle's first line is a header holding the signed checkpoint
(a C2SP signed note) and the hashes of every leaf (when retention removed the first leaves: a
signed expiry statement, the edge of those leaves and the hashes of the rest); each further line is
one event's leaf data. It
prints a JSON report and exits 0 when the bundle verifies, 1 when it does not.
"""
import base64
import hashlib
import json
import sys

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

LEAF_FIELDS = ["id", "timestamp", "team_id", "action", "actor", "targets", "access_route",
               "remote_addr", "user_agent", "metadata"]


def open_note(msg: bytes, verifier_key: str) -> str:
    """Returns the text of a signed note (golang.org/x/mod/sumdb/note) signed by the verifier key."""
    name, key_hash, key = verifier_key.strip().split("+", 2)  # base64 may hold "+" too
    key = base64.b64decode(key)
    if key[0] != 1 or len(key) != 33:
        raise ValueError("not an Ed25519 verifier key")
    if hashlib.sha256(name.encode() + b"\n" + key).digest()[:4].hex() != key_hash:
        raise ValueError("the verifier key's hash does not match its name and key")
    public = Ed25519PublicKey.from_public_bytes(key[1:])
    text, sep, sigs = msg.decode().rpartition("\n\n")
    if not sep:
        raise ValueError("not a signed note")
    text += "\n"
    for line in sigs.splitlines():
        if not line.startswith("\u2014 "):
            raise ValueError("a signature line does not start with an em dash")
        signer, sig = line[2:].split(" ")
        sig = base64.b64decode(sig)
        if signer == name and sig[:4] == bytes.fromhex(key_hash):
            public.verify(sig[4:], text.encode())  # raises InvalidSignature
            return text
    raise ValueError("not signed by the verifier key")


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def root(hashes: list) -> bytes:
    """RFC 6962's Merkle tree hash of leaf hashes."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return hashlib.sha256(b"\x01" + root(hashes[:k]) + root(hashes[k:])).digest()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_after(edge: list, first: int, hashes: list) -> bytes:
    """The root of the tree whose first leaves are given by their edge (the hashes of the complete
    subtrees of [0, first), largest first) and the rest by their leaf hashes."""
    stack, n = list(edge), first
    for h in hashes:
        stack.append(h)
        m = n
        while m & 1:  # each trailing one bit: a subtree of the same height to merge with
            right = stack.pop()
            stack.append(node(stack.pop(), right))
            m >>= 1
        n += 1
    if not stack:
        return hashlib.sha256(b"").digest()
    r = stack[-1]
    for h in reversed(stack[:-1]):
        r = node(h, r)
    return r


def split(b64: str) -> list:
    raw = base64.b64decode(b64)
    return [raw[i:i + 32] for i in range(0, len(raw), 32)]


def checkpoint(text: str):
    origin, size, root_b64 = text.split("\n")[:3]
    return origin, int(size), base64.b64decode(root_b64)


def verify(bundle_path: str, verifier_key: str, pinned_path: str = None) -> dict:
    problems = []
    with open(bundle_path, "rb") as f:
        header = json.loads(f.readline())
        lines = [line.rstrip(b"\n") for line in f]
    origin, size, signed_root = checkpoint(open_note(header["checkpoint"].encode(), verifier_key))
    team = origin.rsplit("/", 1)[1]
    hashes = split(header["hashes"])  # the leaves [expired, size)
    report = {"team": team, "size": size, "verified": False, "problems": problems}
    expired, edge = 0, []
    if "expiry" in header:
        lines_ = open_note(header["expiry"].encode(), verifier_key).split("\n")
        edge = split(header["edge"])
        if lines_[0] != origin or lines_[1] != "expired" or root_after(edge, 0, []) != base64.b64decode(lines_[3]) \
                or len(edge) != bin(int(lines_[2])).count("1"):
            problems.append({"code": "ROOT_MISMATCH", "index": None, "id": None, "detail": "the expiry statement is not of this log"})
            return report
        expired = int(lines_[2])
    report["expired"] = expired
    if expired + len(hashes) != size or root_after(edge, expired, hashes) != signed_root:
        problems.append({"code": "ROOT_MISMATCH", "index": None, "id": None, "detail": "the leaf hashes do not make the signed root"})
        return report
    for k, line in enumerate(lines):
        index = expired + k
        event = json.loads(line, parse_int=float)  # RFC 8785 numbers are doubles
        leaf = rfc8785.dumps({f: event[f] for f in LEAF_FIELDS if f in event})
        if event.get("team_id") != team:
            problems.append({"code": "TEAM_MISMATCH", "index": index, "id": event.get("id"), "detail": "another team's event"})
        if leaf != line or index >= size or leaf_hash(leaf) != hashes[index - expired]:
            problems.append({"code": "HASH_MISMATCH", "index": index, "id": event.get("id"), "detail": "not the event sealed at this leaf"})
    if expired + len(lines) != size:
        problems.append({"code": "MISSING" if expired + len(lines) < size else "EXTRA", "index": None, "id": None,
                         "detail": f"{len(lines)} events for the leaves [{expired}, {size})"})
    if pinned_path:
        with open(pinned_path, "rb") as f:
            p_origin, p_size, p_root = checkpoint(open_note(f.read(), verifier_key))
        if p_origin != origin or p_size > size or p_size < expired or root_after(edge, expired, hashes[:p_size - expired]) != p_root:
            problems.append({"code": "INCONSISTENT", "index": p_size, "id": None, "detail": "the log does not extend the pinned checkpoint"})
    report["verified"] = not problems
    return report


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    try:
        report = verify(*sys.argv[1:])
    except (InvalidSignature, ValueError, KeyError, IndexError) as e:
        report = {"verified": False, "problems": [{"code": "SIGNATURE", "index": None, "id": None, "detail": repr(e)}]}
    print(json.dumps(report, indent=2))
    sys.exit(0 if report["verified"] else 1)


if __name__ == "__main__":
    main()
