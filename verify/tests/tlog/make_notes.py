#!/usr/bin/env python3
"""Writes the signed-note fixtures of tlog_vectors.rs with an implementation
independent of ours: Python's `cryptography` for Ed25519, the C2SP signed-note
and tlog-checkpoint texts assembled by hand from the specifications.

Run from this directory: python3 make_notes.py
"""
import base64
import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# The RFC 6962 tree head over the eight test leaves (rfc6962.toml).
ROOT8 = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def key(name, seed):
    sk = Ed25519PrivateKey.from_private_bytes(seed)
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    kid = hashlib.sha256(name.encode() + b"\n\x01" + pk).digest()[:4]
    vkey = f"{name}+{kid.hex()}+" + base64.b64encode(b"\x01" + pk).decode()
    return sk, kid, vkey


def sig_line(name, kid, sk, text):
    return "\u2014 " + name + " " + base64.b64encode(kid + sk.sign(text.encode())).decode() + "\n"


LOG = "custos.example/tlog-test"
WITNESS = "witness.example/w1"
log_sk, log_kid, log_vkey = key(LOG, bytes(range(32)))
wit_sk, wit_kid, wit_vkey = key(WITNESS, bytes(range(32, 64)))

body = f"{LOG}\n8\n{base64.b64encode(ROOT8).decode()}\n"
with open("checkpoint-8.note", "w", encoding="utf-8", newline="") as f:
    f.write(body + "\n" + sig_line(LOG, log_kid, log_sk, body))

# A witness's signature first (an unknown key to a verifier holding only the
# log key), and an extension line.
ext_body = body + "custos-extension-line\n"
with open("checkpoint-8-witnessed.note", "w", encoding="utf-8", newline="") as f:
    f.write(ext_body + "\n" + sig_line(WITNESS, wit_kid, wit_sk, ext_body) + sig_line(LOG, log_kid, log_sk, ext_body))

with open("keys.toml", "w", encoding="utf-8", newline="") as f:
    f.write("# Written by make_notes.py. Seeds: bytes 0..31 (log) and 32..63 (witness).\n")
    f.write(f'log_verifier_key = "{log_vkey}"\n')
    f.write(f'witness_verifier_key = "{wit_vkey}"\n')
