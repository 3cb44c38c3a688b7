{{/*
Names and labels shared by the templates.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "desktop-image-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base name of every object: fullnameOverride, else the release name when it already contains the
chart name, else "<release>-<chart>". At most 63 characters (a DNS label, as Services need).
*/}}
{{- define "desktop-image-operator.fullname" -}}
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

{{- define "desktop-image-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "desktop-image-operator.labels" -}}
helm.sh/chart: {{ include "desktop-image-operator.chart" . }}
{{ include "desktop-image-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: desktop-image-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The Deployment's selector: stable across upgrades, so never add to it. */}}
{{- define "desktop-image-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "desktop-image-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "desktop-image-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "desktop-image-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "desktop-image-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Which default credentials the operator gets: "secret" (an authorized key file from a Secret),
"metadata" or "none". Refuses more than one choice.
*/}}
{{- define "desktop-image-operator.credentialsMode" -}}
{{- $c := .Values.credentials }}
{{- $chosen := list }}
{{- if $c.existingSecret }}{{ $chosen = append $chosen "credentials.existingSecret" }}{{ end }}
{{- if $c.authorizedKey }}{{ $chosen = append $chosen "credentials.authorizedKey" }}{{ end }}
{{- if $c.metadata }}{{ $chosen = append $chosen "credentials.metadata" }}{{ end }}
{{- if gt (len $chosen) 1 }}
{{- fail (printf "choose at most one of %s" (join ", " $chosen)) }}
{{- end }}
{{- if or $c.existingSecret $c.authorizedKey }}secret{{ else if $c.metadata }}metadata{{ else }}none{{ end }}
{{- end }}

{{/* The Secret holding the authorized key: the user's, or the one this chart creates. */}}
{{- define "desktop-image-operator.credentialsSecretName" -}}
{{- if .Values.credentials.existingSecret }}
{{- .Values.credentials.existingSecret }}
{{- else }}
{{- printf "%s-credentials" (include "desktop-image-operator.fullname" .) }}
{{- end }}
{{- end }}

{{/* Where the authorized key is mounted in the container. */}}
{{- define "desktop-image-operator.credentialsDir" -}}
/var/run/secrets/clouddesktop.yc.io/credentials
{{- end }}

{{/* The ConfigMap holding the grants (templates/grants.yaml); the operator is told its name. */}}
{{- define "desktop-image-operator.grantsConfigMapName" -}}
{{- printf "%s-grants" (include "desktop-image-operator.fullname" .) }}
{{- end }}

{{/*
The Secrets of the release namespace that grants lend (credentials.secretName), as a JSON list without
repeats, so that RBAC can name exactly them.
*/}}
{{- define "desktop-image-operator.lentSecrets" -}}
{{- $names := list }}
{{- range .Values.grants }}
{{- with .credentials }}{{ with .secretName }}{{ $names = append $names . }}{{ end }}{{ end }}
{{- end }}
{{- $names | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
The rules of the operator's own objects; the same for a ClusterRole (whole cluster) and for a Role in
each watched namespace. Every verb is one the operator (or kopf, its framework) actually uses:
- desktopimages: kopf lists and watches them, and merge-/JSON-patches metadata (its finalizer and
  bookkeeping annotations); nothing creates, replaces or deletes them. get only reads what list reads.
- desktopimages/status: the operator merge-patches status.
- events: kopf posts (creates) core/v1 Events; it never updates them.
- secrets: get, by name, the Secret a DesktopImage's spec.credentialsRef names, then list and watch
  it to keep that copy current (one watch per Secret in use, restricted by a field selector to its
  metadata.name, so a reconcile with an unchanged Secret makes no call); and patch its
  metadata.finalizers (a strategic merge, no update): the operator's finalizer keeps a Secret in use
  until the last DesktopImage naming it is deleted. The names are the objects' to choose, so the rule
  cannot list them (resourceNames); list adds no data that get by name did not already allow.
*/}}
{{- define "desktop-image-operator.namespacedRules" -}}
- apiGroups: ["clouddesktop.yc.io"]
  resources: ["desktopimages"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["clouddesktop.yc.io"]
  resources: ["desktopimages/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- if .Values.rbac.credentialsSecrets }}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "patch"]
{{- end }}
{{- end }}

{{- define "desktop-image-operator.metricsServiceName" -}}
{{- printf "%s-metrics" (include "desktop-image-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The PromQL label matchers of this release's operator series: prometheusRule.selector, else the job and
namespace labels its ServiceMonitor (job: the Service's name) or PodMonitor (job: "<namespace>/<name>")
gives them.
*/}}
{{- define "desktop-image-operator.metricsSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else if .Values.metrics.podMonitor.enabled }}
{{- printf "job=%q, namespace=%q" (printf "%s/%s" .Release.Namespace (include "desktop-image-operator.fullname" .)) .Release.Namespace }}
{{- else }}
{{- printf "job=%q, namespace=%q" (include "desktop-image-operator.metricsServiceName" .) .Release.Namespace }}
{{- end }}
{{- end }}
