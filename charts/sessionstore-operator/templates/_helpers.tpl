{{/*
Names, labels and image references shared by every template.
*/}}

{{/* Chart name, overridable. */}}
{{- define "sessionstore-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: the release name when it already contains the chart name (helm install
sessionstore-operator ...), else <release>-<chart>. Truncated to 63 characters (DNS label).
*/}}
{{- define "sessionstore-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart label value: name-version. */}}
{{- define "sessionstore-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades (a Deployment selector is immutable). */}}
{{- define "sessionstore-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sessionstore-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "sessionstore-operator.labels" -}}
helm.sh/chart: {{ include "sessionstore-operator.chart" . }}
{{ include "sessionstore-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: sessionstore
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* ServiceAccount name. */}}
{{- define "sessionstore-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sessionstore-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Lease name for leader election. */}}
{{- define "sessionstore-operator.leaseName" -}}
{{- default (include "sessionstore-operator.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
Image reference from {repository, tag, digest}: repository@digest when a digest is given, else
repository:tag with the tag defaulting to the chart's appVersion. Call with
(dict "image" .Values.image "root" $).
*/}}
{{- define "sessionstore-operator.imageRef" -}}
{{- $image := .image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
The namespaced RBAC rules of docs/contract.md ("RBAC the operator needs"), shared by the
ClusterRole (all namespaces) and the per-namespace Roles (watchNamespaces). The Lease and the
CustomResourceDefinition rules are elsewhere: the Lease lives only in the release namespace and
CRDs are cluster-scoped.
*/}}
{{- define "sessionstore-operator.namespacedRules" -}}
- apiGroups: ["sessionstore.dev"]
  resources: ["sessionclusters", "sessionclusters/status", "sessionclusters/finalizers"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
# Secrets: the operator watches only its own (label app.kubernetes.io/managed-by) and those
# labelled sessionstore.dev/watch=true, metadata only, and reads the ones a SessionCluster names
# with get. RBAC cannot limit list/watch to a label: set watchNamespaces to keep this rule out
# of every other namespace (docs/security.md).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: ["networking.k8s.io"]
  resources: ["networkpolicies"]
  verbs: ["get", "list", "watch", "create", "patch", "update", "delete"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "patch", "delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# list: a pod stuck in ContainerCreating says why only in its FailedCreatePodSandBox events.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch", "list"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors", "prometheusrules"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}

{{/* The cluster-scoped rule: see whether the monitoring CRDs exist. */}}
{{- define "sessionstore-operator.crdRules" -}}
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}
