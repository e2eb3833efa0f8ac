#!/bin/sh
# Regenerates the plexgate TEST PKI in this directory. TEST KEYS ONLY: the private
# keys are committed to a public repository and must never protect real traffic.
#
# Layout follows swanctl's directories so strongSwan can load the same files:
#   x509ca/   trusted CA certificates        (swanctl: /etc/swanctl/x509ca)
#   x509/     end-entity certificates        (swanctl: /etc/swanctl/x509)
#   private/  PKCS#8 PEM private keys, 0600  (swanctl: /etc/swanctl/private)
#   untrusted/  a CA nobody trusts, its client, and a cert "issued" by a non-CA
#   formats/  the same keys in legacy SEC1 / PKCS#1 PEM and DER, for loader tests
#
# Keys: openssl genpkey (PKCS#8). Certificates: strongSwan's `pki` tool for the main
# CAs (so chain tests verify signatures strongSwan made), openssl for the
# intermediate, the untrusted CA and the non-CA issuer (signatures openssl made).
# Requires: openssl (3.x), strongswan-pki (5.9.x).
set -eu
cd "$(dirname "$0")"
umask 077
rm -rf x509ca x509 private untrusted formats
mkdir -p x509ca x509 private untrusted formats

DAYS=7300   # 20 years
O="C=CH, O=plexgate test"

ec256() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -pkeyopt ec_param_enc:named_curve -out "$1"; }
ec384() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -pkeyopt ec_param_enc:named_curve -out "$1"; }
rsa2048() { openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }

# issue KEY DN CAKEY CACERT OUT [pki options...]  (strongSwan pki)
issue() {
  key=$1 dn=$2 cakey=$3 cacert=$4 out=$5; shift 5
  pki --pub --in "$key" --type priv \
    | pki --issue --cacert "$cacert" --cakey "$cakey" --dn "$dn" \
          --lifetime $DAYS --outform pem "$@" > "$out"
}

# --- ECDSA P-256 root CA (strongSwan pki) and its end entities ---
ec256 private/ca.pem
pki --self --ca --in private/ca.pem --type priv --dn "$O, CN=plexgate test CA" \
    --lifetime $DAYS --outform pem > x509ca/ca.pem
ec256 private/gw.pem
issue private/gw.pem "$O, CN=gw.plexgate.test" private/ca.pem x509ca/ca.pem x509/gw.pem \
    --san gw.plexgate.test --san 192.0.2.10 --san 2001:db8::10 --flag serverAuth
ec256 private/client.pem
issue private/client.pem "$O, CN=client.plexgate.test" private/ca.pem x509ca/ca.pem x509/client.pem \
    --san client.plexgate.test --san client@plexgate.test --flag clientAuth

# --- RSA-2048 root CA (strongSwan pki) and its end entities ---
rsa2048 private/rsa-ca.pem
pki --self --ca --in private/rsa-ca.pem --type priv --dn "$O, CN=plexgate test RSA CA" \
    --lifetime $DAYS --outform pem > x509ca/rsa-ca.pem
rsa2048 private/rsa-gw.pem
issue private/rsa-gw.pem "$O, CN=rsa-gw.plexgate.test" private/rsa-ca.pem x509ca/rsa-ca.pem \
    x509/rsa-gw.pem --san rsa-gw.plexgate.test --flag serverAuth
rsa2048 private/rsa-client.pem
# signed with RSASSA-PSS to exercise PSS certificate signatures
issue private/rsa-client.pem "$O, CN=rsa-client.plexgate.test" private/rsa-ca.pem x509ca/rsa-ca.pem \
    x509/rsa-client.pem --san rsa-client.plexgate.test --flag clientAuth --rsa-padding pss

# --- ECDSA P-384 intermediate under the P-256 root (openssl), and a P-384 client ---
cat > /tmp/plexgate-ext.$$ <<EXT
[req]
distinguished_name = dn
[dn]
[sub]
basicConstraints = critical, CA:true, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ee]
basicConstraints = CA:false
subjectAltName = DNS:p384-client.plexgate.test
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[sub2]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[deep]
basicConstraints = CA:false
subjectAltName = DNS:deep.plexgate.test
[nc]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
nameConstraints = critical, permitted;DNS:plexgate.test
[nc_ee]
basicConstraints = CA:false
subjectAltName = DNS:nc.plexgate.test
[untrusted_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[untrusted_ee]
basicConstraints = CA:false
subjectAltName = DNS:client.plexgate.test
[rogue]
basicConstraints = CA:false
subjectAltName = DNS:rogue.plexgate.test
EXT
EXT=/tmp/plexgate-ext.$$
ec384 private/sub-ca.pem
openssl req -new -key private/sub-ca.pem -subj "/C=CH/O=plexgate test/CN=plexgate test P-384 sub CA" \
  | openssl x509 -req -CA x509ca/ca.pem -CAkey private/ca.pem -set_serial 0x5b \
    -days $DAYS -sha256 -extfile $EXT -extensions sub -out x509/sub-ca.pem
ec384 private/p384-client.pem
openssl req -new -key private/p384-client.pem -subj "/C=CH/O=plexgate test/CN=p384-client.plexgate.test" \
  | openssl x509 -req -CA x509/sub-ca.pem -CAkey private/sub-ca.pem -set_serial 0x384 \
    -days $DAYS -sha384 -extfile $EXT -extensions ee -out x509/p384-client.pem

# --- A CA under sub-ca (which has pathlen:0) and its client: violates pathLenConstraint ---
ec256 untrusted/sub2-ca-key.pem
openssl req -new -key untrusted/sub2-ca-key.pem -subj "/C=CH/O=plexgate test/CN=plexgate test sub2 CA" \
  | openssl x509 -req -CA x509/sub-ca.pem -CAkey private/sub-ca.pem -set_serial 0x5c \
    -days $DAYS -sha384 -extfile $EXT -extensions sub2 -out untrusted/sub2-ca.pem
ec256 untrusted/deep-key.pem
openssl req -new -key untrusted/deep-key.pem -subj "/C=CH/O=plexgate test/CN=deep.plexgate.test" \
  | openssl x509 -req -CA untrusted/sub2-ca.pem -CAkey untrusted/sub2-ca-key.pem -set_serial 0x5d \
    -days $DAYS -sha256 -extfile $EXT -extensions deep -out untrusted/deep.pem

# --- A CA with a critical nameConstraints extension (not implemented: must be refused) ---
ec256 untrusted/nc-ca-key.pem
openssl req -new -key untrusted/nc-ca-key.pem -subj "/C=CH/O=plexgate test/CN=plexgate test name-constrained CA" \
  | openssl x509 -req -CA x509ca/ca.pem -CAkey private/ca.pem -set_serial 0x5e \
    -days $DAYS -sha256 -extfile $EXT -extensions nc -out untrusted/nc-ca.pem
ec256 untrusted/nc-key.pem
openssl req -new -key untrusted/nc-key.pem -subj "/C=CH/O=plexgate test/CN=nc.plexgate.test" \
  | openssl x509 -req -CA untrusted/nc-ca.pem -CAkey untrusted/nc-ca-key.pem -set_serial 0x5f \
    -days $DAYS -sha256 -extfile $EXT -extensions nc_ee -out untrusted/nc.pem

# --- An UNTRUSTED CA (openssl) with a client that claims the real client's name ---
ec256 untrusted/ca-key.pem
openssl req -new -x509 -key untrusted/ca-key.pem -subj "/C=CH/O=evil test/CN=untrusted test CA" \
  -days $DAYS -sha256 -config $EXT -extensions untrusted_ca -out untrusted/ca.pem
ec256 untrusted/client-key.pem
openssl req -new -key untrusted/client-key.pem -subj "/C=CH/O=plexgate test/CN=client.plexgate.test" \
  | openssl x509 -req -CA untrusted/ca.pem -CAkey untrusted/ca-key.pem -set_serial 0x666 \
    -days $DAYS -sha256 -extfile $EXT -extensions untrusted_ee -out untrusted/client.pem
# A certificate "issued" by the gateway's end-entity key (gw is not a CA): must be refused.
ec256 untrusted/rogue-key.pem
openssl req -new -key untrusted/rogue-key.pem -subj "/C=CH/O=plexgate test/CN=rogue.plexgate.test" \
  | openssl x509 -req -CA x509/gw.pem -CAkey private/gw.pem -set_serial 0x667 \
    -days $DAYS -sha256 -extfile $EXT -extensions rogue -out untrusted/rogue.pem
rm -f $EXT

# --- Legacy key encodings for loader tests ---
openssl ec -in private/gw.pem -out formats/gw-sec1.pem 2>/dev/null
openssl pkey -in private/gw.pem -outform DER -out formats/gw-pkcs8.der
openssl rsa -in private/rsa-gw.pem -traditional -out formats/rsa-gw-pkcs1.pem 2>/dev/null
openssl x509 -in x509/gw.pem -outform DER -out formats/gw.der

chmod 0600 private/*.pem untrusted/*-key.pem formats/*
chmod 0644 x509ca/*.pem x509/*.pem untrusted/ca.pem untrusted/client.pem untrusted/rogue.pem \
  untrusted/sub2-ca.pem untrusted/deep.pem untrusted/nc-ca.pem untrusted/nc.pem
chmod 0755 x509ca x509 untrusted formats; chmod 0700 private
echo "test PKI regenerated in $(pwd)"
