{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "planetgen.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-qualified unless the release name already contains the chart name. */}}
{{- define "planetgen.fullname" -}}
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

{{- define "planetgen.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Standard labels (app.kubernetes.io/*) on every object. */}}
{{- define "planetgen.labels" -}}
helm.sh/chart: {{ include "planetgen.chart" . }}
{{ include "planetgen.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: planetgen
{{- end }}

{{/* Selector labels: stable across upgrades, so never the version. */}}
{{- define "planetgen.selectorLabels" -}}
app.kubernetes.io/name: {{ include "planetgen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "planetgen.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "planetgen.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "planetgen.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* "true" when replicas peer through Kopf (more than one replica and peering on). */}}
{{- define "planetgen.peered" -}}
{{- if and .Values.peering.enabled (gt (int .Values.replicas) 1) }}true{{ end }}
{{- end }}

{{- define "planetgen.peeringName" -}}
{{- default (include "planetgen.fullname" .) .Values.peering.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The API the operator uses in the namespaces it watches: read from the Python code
     (handlers' Kopf indexes and watches, reconcile's client calls, the children it applies),
     and checked against it by tests/chart. No wildcards. */}}
{{- define "planetgen.operatorRules" -}}
# Kopf watches pipelines and writes its finalizer and progress annotations; the operator clears
# command annotations and restores specs on rollback-to.
- apiGroups: ["planetgen.io"]
  resources: ["planetpipelines"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["planetgen.io"]
  resources: ["planetpipelines/status"]
  verbs: ["patch"]
# Children carry blockOwnerDeletion, which OwnerReferencesPermissionEnforcement allows only to
# those who may update the owner's finalizers.
- apiGroups: ["planetgen.io"]
  resources: ["planetpipelines/finalizers"]
  verbs: ["update"]
# `delete` on every child the operator patches: a patch that changes ownerReferences (a child
# taken over, a pipeline re-created under its old name, a shared build Job's next owner) is allowed
# by OwnerReferencesPermissionEnforcement only to those who may delete the object. InferenceServices
# are also deleted when a canary ends.
- apiGroups: ["serving.kserve.io"]
  resources: ["inferenceservices"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["serving.kserve.io"]
  resources: ["inferencegraphs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Build Jobs are never patched but to add an owner (a pipeline that shares the engine key).
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Revision history: one ControllerRevision per served model, pruned beyond rollback.revisionsKept.
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["list", "watch", "create", "delete"]
# Read-only, and only the children's pods (label selector): why a build or a predictor fails.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# Events about pipelines; and, read only when a build Job has no pod, the Job controller's
# FailedCreate events: the one place it says why the API server refused the Job's pod.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "list"]
{{- if and (include "planetgen.peered" .) .Values.watchNamespaces }}
# Namespace-scoped operators peer through a KopfPeering in each watched namespace.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- end }}

{{/* Labels of the uninstall hook's objects: the release's, but never the Deployment's selector. */}}
{{- define "planetgen.uninstallLabels" -}}
helm.sh/chart: {{ include "planetgen.chart" . }}
app.kubernetes.io/name: {{ include "planetgen.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: uninstall
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: planetgen
{{- end }}

{{/* What `planet release-finalizers` needs where the operator watches: list pipelines, patch
     their finalizers out (cli/release_finalizers.py; checked against it by tests/chart). */}}
{{- define "planetgen.uninstallRules" -}}
- apiGroups: ["planetgen.io"]
  resources: ["planetpipelines"]
  verbs: ["get", "list", "patch"]
{{- end }}
