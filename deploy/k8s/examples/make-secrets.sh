#!/usr/bin/env bash
# Makes what components/tls and components/tokens mount: a CA, the coordinators', nodes' and
# gateway's certificates, the tokens file with a dispatch token and an operator's admin token, and
# the five Secrets as one manifest (seven with components/etcd-tls's, below; docs/deploy.md,
# "Secrets").
#
# Usage: deploy/k8s/examples/make-secrets.sh OUT_DIR [NAMESPACE]
#   OUT_DIR    a new directory outside the repository (mode 0700): the keys, the tokens and
#              secrets.yaml land there; `kubectl apply -f OUT_DIR/secrets.yaml`, then keep or destroy
#              the directory (ca.key signs every certificate: keep it offline)
#   NAMESPACE  the namespace of the Services, named in the certificates (default i2v)
# Environment: I2V_CA_DIR=DIR reuses the CA in DIR (ca.crt, ca.key) instead of making one, to
# rotate the certificates under the same CA; I2V_COORDINATOR_NAMES / I2V_NODE_NAMES add DNS names
# (comma-separated) to those certificates; I2V_CERT_DAYS (default 90) is their lifetime.
# I2V_ETCD_CA_DIR=DIR (ca.crt, ca.key of the CA that etcd trusts for clients) adds what
# components/etcd-tls mounts: a client certificate for etcd (CN = I2V_ETCD_USER, default i2v), a new
# random password in etcd-password (give it to `etcdctl user add`), and their two Secrets.
# Needs openssl, kubectl (to write the manifest; nothing is sent to a cluster) and the i2v CLI.
set -euo pipefail

out="${1:?usage: make-secrets.sh OUT_DIR [NAMESPACE]}"
ns="${2:-i2v}"
days="${I2V_CERT_DAYS:-90}"
i2v="${I2V:-i2v}"

if [[ -e "$out" ]]; then
  echo "make-secrets: $out exists; give a new directory" >&2
  exit 2
fi
umask 077
mkdir -p "$out"
cd "$out"

if [[ -n "${I2V_CA_DIR:-}" ]]; then
  cp "$I2V_CA_DIR/ca.crt" "$I2V_CA_DIR/ca.key" .
else
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt \
    -subj "/CN=i2v-cluster CA" -days 3650 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

# leaf NAME USAGES SANS: NAME.crt and NAME.key, signed by the CA, CN=NAME.
leaf() {
  local name="$1" usages="$2" sans="$3"
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name" 2>/dev/null
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature"
    echo "extendedKeyUsage=$usages"
    [[ -z "$sans" ]] || echo "subjectAltName=$sans"
  } >"$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$name.ext" -out "$name.crt" 2>/dev/null
  rm -f "$name.csr" "$name.ext"
}

# dns NAME...: subjectAltName entries, the extra names from $2 (comma-separated) appended.
dns() {
  local IFS=, n sans=()
  for n in $1 ${2:-}; do [[ -n "$n" ]] && sans+=("DNS:$n"); done
  echo "${sans[*]},DNS:localhost,IP:127.0.0.1"
}

# The coordinators serve clients and peers and are clients of the nodes; the nodes serve and are
# clients of themselves (their probe); the gateway is a client only.
svc="$ns.svc"
leaf i2v-coordinator serverAuth,clientAuth \
  "$(dns "i2v-coordinator,i2v-coordinator.$ns,i2v-coordinator.$svc,i2v-coordinator.$svc.cluster.local" "${I2V_COORDINATOR_NAMES:-}")"
leaf i2v-node serverAuth,clientAuth "$(dns "i2v-node,i2v-node.$ns,i2v-node.$svc" "${I2V_NODE_NAMES:-}")"
leaf i2v-gateway clientAuth ""

# etcd: a client certificate from etcd's CA (CN: the user, for etcd's certificate-named users too).
etcd_user="${I2V_ETCD_USER:-i2v}"
if [[ -n "${I2V_ETCD_CA_DIR:-}" ]]; then
  mkdir etcd-ca
  cp "$I2V_ETCD_CA_DIR/ca.crt" "$I2V_ETCD_CA_DIR/ca.key" etcd-ca/
  (cd etcd-ca && leaf "$etcd_user" clientAuth "" && mv "$etcd_user.crt" ../etcd-client.crt &&
    mv "$etcd_user.key" ../etcd-client.key)
  cp etcd-ca/ca.crt etcd-ca.crt
  rm -rf etcd-ca
  openssl rand -base64 32 | tr -d '\n' >etcd-password
fi

# Tokens: the coordinators' dispatch token (admin, so the nodes take its calls) and one admin for
# the operator. Clients get theirs from `i2v token new --name NAME`, its line appended to `tokens`.
dispatch="$("$i2v" token new --name i2v-dispatch --role admin --json)"
admin="$("$i2v" token new --name admin --role admin --json)"
field() { "${PYTHON:-python3}" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
{
  echo "# sha256:<hex> <client-name> <client|admin>, one a line (i2v token new)"
  field line <<<"$dispatch"
  field line <<<"$admin"
} >tokens
field token <<<"$dispatch" >dispatch-token
field token <<<"$admin" >admin.token

secret() { kubectl create secret "$@" --namespace "$ns" --dry-run=client -o yaml; }
{
  for role in coordinator node gateway; do
    secret generic "i2v-$role-tls" --type=kubernetes.io/tls \
      --from-file=tls.crt="i2v-$role.crt" --from-file=tls.key="i2v-$role.key" --from-file=ca.crt=ca.crt
    echo "---"
  done
  secret generic i2v-tokens --from-file=tokens=tokens
  echo "---"
  secret generic i2v-dispatch-token --from-file=token=dispatch-token
  if [[ -n "${I2V_ETCD_CA_DIR:-}" ]]; then
    echo "---"
    secret generic i2v-etcd-client --type=kubernetes.io/tls \
      --from-file=tls.crt=etcd-client.crt --from-file=tls.key=etcd-client.key --from-file=ca.crt=etcd-ca.crt
    echo "---"
    secret generic i2v-etcd-password --from-file=password=etcd-password
  fi
} >secrets.yaml

echo "make-secrets: wrote $out (apply secrets.yaml; admin.token is the operator's admin token;"
echo "  ca.key signs every certificate: keep it offline, or pass it back with I2V_CA_DIR to rotate)"
