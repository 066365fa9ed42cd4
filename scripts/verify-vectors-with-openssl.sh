#!/usr/bin/env bash
# Checks every signature in the test vectors with openssl alone (no Countersign code), and that
# a one-byte change to a payload makes it fail. Needs openssl, jq and base64.
#   usage: scripts/verify-vectors-with-openssl.sh [tests/vectors/signatures.json]
set -euo pipefail
vectors=${1:-"$(dirname "$0")/../tests/vectors/signatures.json"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

jq -r .key.public_key_pem "$vectors" > "$work/key.pem"

# The key id is the SHA-256 of the DER SubjectPublicKeyInfo.
key_id=$(openssl pkey -pubin -in "$work/key.pem" -outform DER | sha256sum | cut -d' ' -f1)
if [ "$key_id" != "$(jq -r .key.key_id "$vectors")" ]; then
  echo "key id mismatch: openssl says $key_id" >&2
  exit 1
fi
echo "key id $key_id: OK"

count=$(jq '.cases | length' "$vectors")
for i in $(seq 0 $((count - 1))); do
  name=$(jq -r ".cases[$i].name" "$vectors")
  jq -r ".cases[$i].payload_base64" "$vectors" | base64 -d > "$work/payload"
  jq -r ".cases[$i].signature_der_base64" "$vectors" | base64 -d > "$work/signature.der"
  printf '%s: ' "$name"
  openssl dgst -sha256 -verify "$work/key.pem" -signature "$work/signature.der" "$work/payload"

  printf 'x' >> "$work/payload"
  if openssl dgst -sha256 -verify "$work/key.pem" -signature "$work/signature.der" \
       "$work/payload" > /dev/null 2>&1; then
    echo "$name: a changed payload still verified" >&2
    exit 1
  fi
done
echo "all $count signatures verified by openssl; changed payloads rejected"
