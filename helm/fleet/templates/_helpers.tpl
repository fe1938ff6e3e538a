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
{{- $repository := required "image.repository is required: there is no public fleet image. Build docker/Dockerfile (or an image FROM it with your tasks), push it to your registry and set image.repository (see docker/README.md)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
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

{{/* The environment of every fleet container: files, log format, and where the URLs are.
Credentials only ever come as files (fleet reads FLEET__<KEY>_FILE), so none is in the
environment of the worker or its tasks: either whole URLs from the connection Secret
mounted at /etc/fleet/secrets, or URLs without credentials in plain values plus the
user name and password keys of an operator-made Secret mounted at
/etc/fleet/credentials/<broker|state>. The signing keys, when set, are a file too. */}}
{{- define "fleet.env" -}}
- name: FLEET__CONFIG
  value: /etc/fleet/settings.yaml
- name: FLEET__QUEUES_FILE
  value: /etc/fleet/queues.yaml
- name: FLEET__LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: FLEET__LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- range $kind := list "broker" "state" }}
{{- $spec := get $.Values.connection $kind }}
{{- if $spec.url }}
- name: FLEET__{{ upper $kind }}_URL
  value: {{ $spec.url | quote }}
{{- else }}
- name: FLEET__{{ upper $kind }}_URL_FILE
  value: /etc/fleet/secrets/{{ $kind }}-url
{{- end }}
{{- if $spec.credentialsSecret }}
{{- if $spec.usernameKey }}
- name: FLEET__{{ upper $kind }}_USERNAME_FILE
  value: /etc/fleet/credentials/{{ $kind }}/username
{{- end }}
- name: FLEET__{{ upper $kind }}_PASSWORD_FILE
  value: /etc/fleet/credentials/{{ $kind }}/password
{{- end }}
{{- end }}
{{- if .Values.signing.existingSecret }}
- name: FLEET__SIGNING_KEYS_FILE
  value: /etc/fleet/signing/keys
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Whether any URL is read from the connection Secret ("true" or ""). */}}
{{- define "fleet.urlsFromSecret" -}}
{{- if or (not .Values.connection.broker.url) (not .Values.connection.state.url) }}true{{ end }}
{{- end }}

{{- define "fleet.volumeMounts" -}}
- name: config
  mountPath: /etc/fleet
  readOnly: true
{{- if include "fleet.urlsFromSecret" . }}
- name: connection
  mountPath: /etc/fleet/secrets
  readOnly: true
{{- end }}
{{- range $kind := list "broker" "state" }}
{{- if (get $.Values.connection $kind).credentialsSecret }}
- name: {{ $kind }}-credentials
  mountPath: /etc/fleet/credentials/{{ $kind }}
  readOnly: true
{{- end }}
{{- end }}
{{- if .Values.signing.existingSecret }}
- name: signing-keys
  mountPath: /etc/fleet/signing
  readOnly: true
{{- end }}
- name: tmp
  mountPath: /tmp
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Volumes; the argument is a dict with the chart context ("root") and the ConfigMap. */}}
{{- define "fleet.volumes" -}}
{{- $connection := .root.Values.connection }}
- name: config
  configMap:
    name: {{ .configMap }}
{{- if include "fleet.urlsFromSecret" .root }}
- name: connection
  secret:
    secretName: {{ include "fleet.secretName" .root }}
    items:
      {{- if not $connection.broker.url }}
      - key: {{ $connection.brokerUrlKey }}
        path: broker-url
      {{- end }}
      {{- if not $connection.state.url }}
      - key: {{ $connection.stateUrlKey }}
        path: state-url
      {{- end }}
{{- end }}
{{- range $kind := list "broker" "state" }}
{{- $spec := get $connection $kind }}
{{- if $spec.credentialsSecret }}
{{- if not $spec.url }}
{{- fail (printf "connection.%s.credentialsSecret needs connection.%s.url (the URL without credentials)" $kind $kind) }}
{{- end }}
- name: {{ $kind }}-credentials
  secret:
    secretName: {{ $spec.credentialsSecret }}
    items:
      {{- if $spec.usernameKey }}
      - key: {{ $spec.usernameKey }}
        path: username
      {{- end }}
      - key: {{ required (printf "connection.%s.passwordKey is required with connection.%s.credentialsSecret" $kind $kind) $spec.passwordKey }}
        path: password
{{- end }}
{{- end }}
{{- with .root.Values.signing.existingSecret }}
- name: signing-keys
  secret:
    secretName: {{ . }}
    items:
      - key: {{ $.root.Values.signing.key }}
        path: keys
{{- end }}
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

{{/* dead_after as fleet sees it: the settings value, else fleet's default (9 s). */}}
{{- define "fleet.deadAfter" -}}
{{- if hasKey .Values.settings "dead_after" }}
{{- .Values.settings.dead_after }}
{{- else }}
{{- 9 }}
{{- end }}
{{- end }}

{{/* An exec probe running `fleet probe live|ready`: it reads the health files the worker
keeps in healthDir (no app import, no network); the argument is a dict: root, probe,
check ("live" or "ready"). */}}
{{- define "fleet.healthProbe" -}}
exec:
  command:
    - fleet
    - probe
    - {{ .check }}
    - --dir
    - {{ .root.Values.healthDir | quote }}
    - --max-age
    - {{ include "fleet.deadAfter" .root | quote }}
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- end }}
