#!/bin/bash
# Generate the TLS material stomp.py's tests/test_ssl.py expects, with openssl (no keytool needed).
# $1 = broker-side dir (broker.{pem,key}, expiredbroker.{pem,key});  $2 = client-side dir (the suite's tmp/:
#      client.key, client.pem, broker.pem, broker2.pem, expiredbroker.pem)
set -euo pipefail
B=$1; C=$2; mkdir -p "$B" "$C"
W=$(mktemp -d)
selfsigned() { # name CN
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/$1.key" -out "$W/$1.pem" -days 3650 \
    -subj "/CN=$2/OU=test/O=test/L=test/C=GB" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
}
selfsigned broker test
selfsigned broker2 test2
selfsigned client testclient
# expired certificate: valid 2020-01-01 .. 2020-01-02, signed by itself through `openssl ca -selfsign`
mkdir -p "$W/ca/newcerts"; : > "$W/ca/index.txt"; echo 01 > "$W/ca/serial"
cat > "$W/ca.cnf" <<CNF
[ca]
default_ca = c
[c]
dir = $W/ca
database = \$dir/index.txt
new_certs_dir = \$dir/newcerts
serial = \$dir/serial
default_md = sha256
policy = p
copy_extensions = copy
unique_subject = no
[p]
commonName = supplied
[req]
distinguished_name = dn
[dn]
CNF
openssl req -new -newkey rsa:2048 -nodes -keyout "$W/expiredbroker.key" -out "$W/expiredbroker.csr" \
  -subj "/CN=test" -addext "subjectAltName=IP:127.0.0.1" -config "$W/ca.cnf" 2>/dev/null
openssl ca -batch -config "$W/ca.cnf" -selfsign -keyfile "$W/expiredbroker.key" -in "$W/expiredbroker.csr" \
  -startdate 20200101000000Z -enddate 20200102000000Z -out "$W/expiredbroker.full.pem" 2>/dev/null
openssl x509 -in "$W/expiredbroker.full.pem" -out "$W/expiredbroker.pem"
cp "$W/broker.pem" "$W/broker.key" "$W/expiredbroker.pem" "$W/expiredbroker.key" "$B/"
cp "$W/client.key" "$W/client.pem" "$W/broker.pem" "$W/broker2.pem" "$W/expiredbroker.pem" "$C/"
rm -rf "$W"
