{{/* Names, labels and the pieces the worker Deployment and the setup Job share. */}}

{{- define "fleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleet.fullname" -}}
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

{{- define "fleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "fleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "fleet.labels" -}}
helm.sh/chart: {{ include "fleet.chart" . }}
{{ include "fleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: fleet
{{- end }}

{{- define "fleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "fleet.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "fleet.secretName" -}}
{{- default (printf "%s-connection" (include "fleet.fullname" .)) .Values.connection.existingSecret }}
{{- end }}

{{/* shutdown_grace as fleet sees it: the settings value, else fleet's default (30 s). */}}
{{- define "fleet.shutdownGrace" -}}
{{- if hasKey .Values.settings "shutdown_grace" }}
{{- .Values.settings.shutdown_grace | float64 | ceil | int }}
{{- else }}
{{- 30 }}
{{- end }}
{{- end }}

{{/*
terminationGracePeriodSeconds: on SIGTERM the supervisor gives tasks shutdown_grace
seconds, waits up to 10 s more for its processes, then requeues what is left and writes
its last heartbeat. Kubernetes must not SIGKILL it before that.
*/}}
{{- define "fleet.terminationGrace" -}}
{{- $grace := include "fleet.shutdownGrace" . | int }}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds }}
{{- add $grace 30 }}
{{- else }}
{{- $value := .Values.terminationGracePeriodSeconds | int }}
{{- if le $value (add $grace 10) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed settings.shutdown_grace + 10 (%d): Kubernetes would kill workers before they finish draining" $value (add $grace 10)) }}
{{- end }}
{{- $value }}
{{- end }}
{{- end }}

{{/* The settings file and the queues file, as the ConfigMaps hold them. */}}
{{- define "fleet.configData" -}}
settings.yaml: |
  {{- toYaml .Values.settings | nindent 2 }}
queues.yaml: |
  {{- toYaml .Values.queueDefinitions | nindent 2 }}
{{- end }}

{{/* The environment of every fleet container: files, log format, and where the URLs are:
files of the Secret mounted at /etc/fleet/secrets, so that no credential is in the
environment of the worker or its tasks (fleet reads FLEET__<KEY>_FILE). */}}
{{- define "fleet.env" -}}
- name: FLEET__CONFIG
  value: /etc/fleet/settings.yaml
- name: FLEET__QUEUES_FILE
  value: /etc/fleet/queues.yaml
- name: FLEET__LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: FLEET__LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: FLEET__BROKER_URL_FILE
  value: /etc/fleet/secrets/broker-url
- name: FLEET__STATE_URL_FILE
  value: /etc/fleet/secrets/state-url
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "fleet.volumeMounts" -}}
- name: config
  mountPath: /etc/fleet
  readOnly: true
- name: connection
  mountPath: /etc/fleet/secrets
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes; the argument is a dict with the chart context ("root") and the ConfigMap. */}}
{{- define "fleet.volumes" -}}
- name: config
  configMap:
    name: {{ .configMap }}
- name: connection
  secret:
    secretName: {{ include "fleet.secretName" .root }}
    items:
      - key: {{ .root.Values.connection.brokerUrlKey }}
        path: broker-url
      - key: {{ .root.Values.connection.stateUrlKey }}
        path: state-url
- name: tmp
  emptyDir:
    {{- with .root.Values.tmp.medium }}
    medium: {{ . }}
    {{- end }}
    {{- with .root.Values.tmp.sizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- with .root.Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An exec probe running `fleet check`; the argument is a dict: root, probe. */}}
{{- define "fleet.checkProbe" -}}
exec:
  command:
    - fleet
    - check
    - --app
    - {{ .root.Values.app | quote }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
