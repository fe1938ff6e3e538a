{{/* Worker metrics (values.metrics): the pieces the worker Deployment includes. */}}

{{- define "fleet.metricsArgs" -}}
{{- if .Values.metrics.enabled }}
- --metrics-port
- {{ .Values.metrics.port | quote }}
{{- end }}
{{- end }}

{{- define "fleet.metricsPorts" -}}
{{- if .Values.metrics.enabled }}
ports:
  - name: metrics
    containerPort: {{ .Values.metrics.port }}
    protocol: TCP
{{- end }}
{{- end }}
