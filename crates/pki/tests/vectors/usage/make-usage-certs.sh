#!/bin/sh
# End-entity certificates for the keyUsage / extendedKeyUsage checks of
# crates/pki/tests/usage.rs, issued by the test PKI's ECDSA root CA
# (keys/test/x509ca/ca.pem, keys/test/private/ca.pem). TEST KEYS ONLY.
# Requires openssl 3.x. Run from this directory.
set -eu
cd "$(dirname "$0")"
CA=../../../../../keys/test
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$CA/private/ca.pem" "$tmp/ca-key.pem"
chmod 600 "$tmp/ca-key.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
  -pkeyopt ec_param_enc:named_curve -out "$tmp/ee-key.pem"
cat > "$tmp/ext.cnf" <<EXT
[ku_nosig]
basicConstraints = CA:false
keyUsage = critical, keyEncipherment
subjectAltName = DNS:ku-nosig.plexgate.test
[ku_sig]
basicConstraints = CA:false
keyUsage = critical, digitalSignature
subjectAltName = DNS:ku-sig.plexgate.test
[eku_code]
basicConstraints = CA:false
extendedKeyUsage = codeSigning
subjectAltName = DNS:eku-code.plexgate.test
[eku_ipsec]
basicConstraints = CA:false
keyUsage = digitalSignature
extendedKeyUsage = 1.3.6.1.5.5.7.3.17
subjectAltName = DNS:eku-ipsec.plexgate.test
[eku_any]
basicConstraints = CA:false
extendedKeyUsage = 2.5.29.37.0
subjectAltName = DNS:eku-any.plexgate.test
EXT
for name in ku_nosig ku_sig eku_code eku_ipsec eku_any; do
  cn=$(echo "$name" | tr _ -)
  openssl req -new -key "$tmp/ee-key.pem" -subj "/C=CH/O=plexgate test/CN=$cn.plexgate.test" \
    -out "$tmp/$name.csr"
  openssl x509 -req -in "$tmp/$name.csr" -CA "$CA/x509ca/ca.pem" -CAkey "$tmp/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 8)" -days 7300 -sha256 \
    -extfile "$tmp/ext.cnf" -extensions "$name" -out "$cn.pem"
done
