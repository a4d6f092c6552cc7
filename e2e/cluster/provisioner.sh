#!/usr/bin/env bash
# A minimal volume provisioner for the local cluster's default StorageClass `standard`
# (provisioner sessionstore.local/hostpath): for every Pending claim of that class it makes a
# world-writable directory under $PV_ROOT and a hostPath PersistentVolume pre-bound to the claim;
# a PersistentVolume released by its claim is deleted together with its directory. Started and
# stopped by cluster.sh (component "provisioner"); polls every 2 s.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap - ERR      # a failed poll is retried, not fatal
set +e
PV_ROOT=${1:?usage: provisioner.sh PV_ROOT}
CLASS=standard
mkdir -p "$PV_ROOT"
echo "provisioner: class $CLASS, volumes in $PV_ROOT"

provision() {
  local ns=$1 name=$2 uid=$3 size=$4 modes=$5 dir="$PV_ROOT/pvc-$3"
  mkdir -p "$dir" && chmod 0777 "$dir"
  kc apply -f - <<YAML && echo "provisioned pvc-$uid for $ns/$name ($size)"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: pvc-$uid
  labels: {sessionstore.local/provisioned: "true"}
  annotations: {pv.kubernetes.io/provisioned-by: sessionstore.local/hostpath}
spec:
  storageClassName: $CLASS
  capacity: {storage: "$size"}
  accessModes: [${modes:-ReadWriteOnce}]
  persistentVolumeReclaimPolicy: Delete
  claimRef: {namespace: $ns, name: $name, uid: $uid}
  hostPath: {path: "$dir", type: DirectoryOrCreate}
YAML
}

while :; do
  kc get pvc --all-namespaces -o jsonpath='{range .items[?(@.status.phase=="Pending")]}{.metadata.namespace}{" "}{.metadata.name}{" "}{.metadata.uid}{" "}{.spec.resources.requests.storage}{" "}{.spec.storageClassName}{" "}{.spec.accessModes[*]}{"\n"}{end}' 2>/dev/null |
  while read -r ns name uid size class modes; do
    [ "$class" = "$CLASS" ] || continue
    kc get pv "pvc-$uid" >/dev/null 2>&1 && continue
    provision "$ns" "$name" "$uid" "$size" "${modes// /, }"
  done
  # Released (claim deleted) or Failed (no deleter plugin for hostPath): remove volume and data
  kc get pv -l sessionstore.local/provisioned=true -o jsonpath='{range .items[?(@.status.phase!="Bound")]}{.metadata.name}{" "}{.status.phase}{"\n"}{end}' 2>/dev/null |
  while read -r pv phase; do
    case $phase in Released|Failed) ;; *) continue ;; esac
    kc delete pv "$pv" --wait=false >/dev/null 2>&1 && rm -rf "${PV_ROOT:?}/$pv" && echo "deleted $pv"
  done
  sleep 2
done
