#!/bin/sh
# Signatures made by OpenSSL (not by us) over a fixed message with the test keys,
# used as interop known-answer vectors by tests/interop_openssl.rs.
# Re-run after keys/test/make-test-pki.sh regenerates the keys.
set -eu
cd "$(dirname "$0")"
K=../../../../keys/test/private
printf 'plexgate signed octets: RealMessage | Nonce | prf(SK_p, IDx)' > message.bin
sig() { openssl dgst "$@" -sign "$KEY" -out "$OUT" message.bin; xxd -p "$OUT" | tr -d '\n' > "$OUT.hex"; rm "$OUT"; }
KEY=$K/gw.pem OUT=gw-ecdsa-sha256.der sig -sha256
KEY=$K/p384-client.pem OUT=p384-ecdsa-sha384.der sig -sha384
KEY=$K/rsa-gw.pem OUT=rsa-gw-pkcs1-sha256.sig sig -sha256
KEY=$K/rsa-gw.pem OUT=rsa-gw-pkcs1-sha1.sig sig -sha1
KEY=$K/rsa-gw.pem OUT=rsa-gw-pss-sha256.sig sig -sha256 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32 -sigopt rsa_mgf1_md:sha256
KEY=$K/rsa-gw.pem OUT=rsa-gw-pss-sha384.sig sig -sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384
openssl version > openssl-version.txt
