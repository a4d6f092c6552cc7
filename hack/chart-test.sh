#!/usr/bin/env bash
# The chart's tests: `helm lint --strict` (default and non-default values), the CRD drift check,
# and the render tests in hack/chart-test/test_chart.py (helm template + assertions on RBAC, images,
# environment, securityContext, probes, replicas, leader election). Exits non-zero on any failure.
# helm comes from hack/tools/helm.sh (built from its Go module, cached); pytest and PyYAML from a
# venv cached in ${SESSIONSTORE_CACHE}/venv-chart.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

CHART=charts/sessionstore-operator

step "helm (hack/tools/helm.sh)"
HELM="$(hack/tools/helm.sh)"
"$HELM" version --short

step "CRDs: $CHART/crds/ must equal crds/"
# Helm installs the chart's crds/; /crds is what crdgen generates from the Rust types.
shopt -s nullglob
generated=(crds/*.yaml) copied=("$CHART"/crds/*.yaml)
shopt -u nullglob
if [ ${#generated[@]} -eq 0 ] && [ ${#copied[@]} -eq 0 ]; then
  echo "no CRDs generated yet: nothing to compare"
elif ! diff -r -u --exclude='.*' crds "$CHART/crds"; then
  echo "FAIL: $CHART/crds/ differs from crds/ (regenerate with crdgen, which writes both)" >&2
  exit 1
else
  echo "identical: ${generated[*]##*/}"
fi

step "helm lint --strict"
"$HELM" lint --strict "$CHART"
"$HELM" lint --strict "$CHART" --values hack/chart-test/values-namespaced.yaml

step "render tests (pytest)"
venv="$SESSIONSTORE_CACHE/venv-chart"
requirements=hack/chart-test/requirements.txt
# Reinstall only when the pinned requirements change.
stamp="$venv/.requirements-$(sha256sum "$requirements" | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
  touch "$stamp"
fi
HELM="$HELM" "$venv/bin/python" -m pytest -p no:cacheprovider -q hack/chart-test
