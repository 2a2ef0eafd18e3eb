{{- define "iamwright.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "iamwright.serviceAccountName" -}}
{{- default (include "iamwright.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "iamwright.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iamwright.labels" -}}
{{ include "iamwright.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The rules the operator needs in every namespace it watches: exactly the verbs it uses. */}}
{{- define "iamwright.namespacedRules" -}}
# Watch the custom resources; patch adds and removes the finalizer.
- apiGroups: ["iamwright.dev"]
  resources: ["iampolicies", "iamroles", "instanceprofilebindings", "iamuseraccesskeys", "iamgroups"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written with server-side apply (a patch).
- apiGroups: ["iamwright.dev"]
  resources: ["iampolicies/status", "iamroles/status", "instanceprofilebindings/status", "iamuseraccesskeys/status", "iamgroups/status"]
  verbs: ["get", "patch"]
# Secrets carry an ownerReference with blockOwnerDeletion to their IamUserAccessKey,
# which the apiserver allows only with update on the owner's finalizers.
- apiGroups: ["iamwright.dev"]
  resources: ["iampolicies/finalizers", "iamroles/finalizers", "instanceprofilebindings/finalizers", "iamuseraccesskeys/finalizers", "iamgroups/finalizers"]
  verbs: ["update"]
# Access keys are delivered into Secrets the operator owns.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
# Policy documents referenced by documentFrom / inlinePoliciesFrom: read, and watched
# (metadata only) so that a change re-applies the documents. Never written.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.rbac.restartWorkloads }}
# IamUserAccessKey spec.rotation.restartWorkloads: roll the workloads that read a
# rotated key's Secret (a pod-template annotation with the new key id).
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets", "daemonsets"]
  verbs: ["get", "list", "patch"]
{{- end }}
{{- end -}}
