#!/usr/bin/env bash
# `make app/uninstall`: removes one Kip instance. Refuses while cells still run (pods bound to the
# instance's virtual node each have a VM) unless FORCE=1, then says what stays behind.
# Usage: uninstall.sh <name> <namespace> [FORCE]
set -euo pipefail
name="$1" namespace="$2" force="${3:-}"

# The chart records the virtual node's name on the StatefulSet and the provider ConfigMap.
node=$(kubectl get statefulset "${name}-provider" --namespace "$namespace" --ignore-not-found \
  --output 'jsonpath={.metadata.annotations.kip\.elotl\.co/virtual-node}' 2>/dev/null || true)
if [ -z "$node" ]; then
  node=$(kubectl get configmap "${name}-provider-config" --namespace "$namespace" --ignore-not-found \
    --output 'jsonpath={.metadata.annotations.kip\.elotl\.co/virtual-node}' 2>/dev/null || true)
fi
[ -n "$node" ] || node=$(printf '%s-%s' "$name" "$namespace" | cut -c1-63)

# Listing every pod and filtering here works on any API server, field selectors or not.
cells=$(kubectl get pods --all-namespaces \
  --output 'jsonpath={range .items[*]}{.spec.nodeName}{" "}{.metadata.namespace}/{.metadata.name}{"\n"}{end}' |
  awk -v n="$node" '$1 == n { print $2 }')
if [ -n "$cells" ]; then
  count=$(printf '%s\n' "$cells" | wc -l)
  list=$(printf '%s\n' "$cells" | paste -sd ' ' -)
  if [ "$force" != "1" ]; then
    echo "app/uninstall: refusing: ${count} cell(s) still run on virtual node ${node}: ${list} (delete those pods first, or FORCE=1 to uninstall anyway)" >&2
    exit 1
  fi
  echo "app/uninstall: FORCE=1: uninstalling while ${count} cell(s) still run on ${node}: ${list}; their VMs keep running and billing until deleted" >&2
fi

kubectl delete application "$name" --namespace "$namespace" --ignore-not-found
# Objects applied without the Marketplace deployer carry no owner reference to the Application.
kubectl delete statefulset,deployment,service,configmap --namespace "$namespace" \
  --selector "app.kubernetes.io/name=${name}" --ignore-not-found

pvcs=$(kubectl get persistentvolumeclaims --namespace "$namespace" --selector "app.kubernetes.io/name=${name}" \
  --output 'jsonpath={range .items[*]}{.metadata.name}{" "}{end}' 2>/dev/null || true)
echo "app/uninstall: removed ${name} from namespace ${namespace}."
if [ -n "${pvcs// /}" ]; then
  echo "What stays: PersistentVolumeClaims ${pvcs% } (Kip's state; a reinstall with the same name reuses them). Remove with: kubectl delete pvc --namespace ${namespace} --selector app.kubernetes.io/name=${name}"
fi
if kubectl get node "$node" >/dev/null 2>&1; then
  echo "What stays: the virtual node ${node} (the provider removes it on a clean stop). Remove with: kubectl delete node ${node}"
fi
