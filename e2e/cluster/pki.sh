# PKI of the local cluster, generated with openssl into $STATE_DIR/pki. Sourced by cluster.sh.
# Certificates are reused across runs (stable kubeconfig); regenerated when missing or when the
# apiserver certificate does not cover the node IP (i.e. the network layout changed).

PKI="$STATE_DIR/pki"

# pki_cert NAME SUBJECT [SAN]: a client/server certificate signed by the cluster CA (EC P-256).
pki_cert() {
  local name=$1 subj=$2 san=${3:-}
  [ -s "$PKI/$name.crt" ] && return 0
  local ext="$PKI/$name.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then
      echo "extendedKeyUsage=serverAuth,clientAuth"
      echo "subjectAltName=$san"
    else
      echo "extendedKeyUsage=clientAuth"
    fi
  } > "$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/$name.key" 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  rm -f "$PKI/$name.csr" "$ext"
  chmod 600 "$PKI/$name.key"
}

# write_kubeconfig FILE NAME: a kubeconfig using certificate NAME against the apiserver.
write_kubeconfig() {
  local file=$1 name=$2
  cat > "$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: sessionstore
  cluster:
    server: https://$NODE_IP:$APISERVER_PORT
    certificate-authority-data: $(base64 -w0 < "$PKI/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 < "$PKI/$name.crt")
    client-key-data: $(base64 -w0 < "$PKI/$name.key")
contexts:
- name: sessionstore
  context:
    cluster: sessionstore
    user: $name
current-context: sessionstore
KC
  chmod 600 "$file"
}

pki_setup() {
  mkdir -p "$PKI" "$STATE_DIR/kubeconfigs"
  if [ -s "$PKI/apiserver.crt" ] && ! openssl x509 -in "$PKI/apiserver.crt" -noout -ext subjectAltName 2>/dev/null | grep -q "IP Address:$NODE_IP\b"; then
    info "network changed: regenerating PKI"
    rm -rf "$PKI"; mkdir -p "$PKI"
  fi
  if [ ! -s "$PKI/ca.crt" ]; then
    openssl ecparam -name prime256v1 -genkey -noout -out "$PKI/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=sessionstore-local-ca" -days 3650 -sha256 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$PKI/ca.crt" 2>/dev/null
    chmod 600 "$PKI/ca.key"
  fi
  if [ ! -s "$PKI/sa.key" ]; then
    openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    chmod 600 "$PKI/sa.key"
  fi
  pki_cert apiserver "/CN=kube-apiserver" \
    "IP:$NODE_IP,IP:$KUBERNETES_SVC_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN,DNS:localhost"
  pki_cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  pki_cert admin "/O=system:masters/CN=sessionstore-admin"
  pki_cert controller-manager "/CN=system:kube-controller-manager"
  pki_cert scheduler "/CN=system:kube-scheduler"
  pki_cert kube-proxy "/CN=system:kube-proxy"
  pki_cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
  pki_cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
  local n
  for n in admin controller-manager scheduler kube-proxy kubelet; do
    [ -s "$STATE_DIR/kubeconfigs/$n.kubeconfig" ] || write_kubeconfig "$STATE_DIR/kubeconfigs/$n.kubeconfig" "$n"
  done
  [ -s "$KUBECONFIG_PATH" ] || cp "$STATE_DIR/kubeconfigs/admin.kubeconfig" "$KUBECONFIG_PATH"
}
