{{/*
Worker groups: one Deployment (with its PodDisruptionBudget and, when on, its CPU
HorizontalPodAutoscaler) per entry of .Values.workerGroups, all mounting the release's
one ConfigMap of queue definitions, so groups cannot drift apart. A group's keys
override the top-level values of the same name (autoscaling and podDisruptionBudget are
merged key by key). Without workerGroups there is one group, "worker", made of the
top-level values, whose Deployment keeps the release's full name (upgrades of releases
made before groups existed keep their Deployment and selector).

"fleet.workerGroups" renders the groups as a YAML list (read it with fromYamlArray):
every overridable value, plus name, deployment (its Deployment's name), grouped (false
for the single default group) and consumes (the queues it consumes; every defined
queue when `queues` is empty). Other templates (KEDA, metrics) range over it too.
Every queue a group names must be defined in queueDefinitions.queues: rendering fails
otherwise, naming the group, the queue and the defined ones (fleet worker checks it
again at start).
*/}}
{{- define "fleet.workerGroups" -}}
{{- $root := . }}
{{- $defined := keys .Values.queueDefinitions.queues | sortAlpha }}
{{- $base := dict }}
{{- range $key := list "app" "queues" "processes" "threads" "replicaCount" "resources" "autoscaling" "podDisruptionBudget" "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" "priorityClassName" "podAnnotations" "podLabels" }}
{{- $_ := set $base $key (get $root.Values $key) }}
{{- end }}
{{- $groups := list }}
{{- if .Values.workerGroups }}
{{- range $name := keys .Values.workerGroups | sortAlpha }}
{{- $group := get $root.Values.workerGroups $name | default dict }}
{{- $merged := deepCopy $base }}
{{- range $key, $value := $group }}
{{- if and (has $key (list "autoscaling" "podDisruptionBudget")) (kindIs "map" $value) }}
{{- $_ := set $merged $key (mergeOverwrite (deepCopy (get $base $key)) $value) }}
{{- else }}
{{- $_ := set $merged $key $value }}
{{- end }}
{{- end }}
{{- $_ := set $merged "name" $name }}
{{- $_ := set $merged "deployment" (printf "%s-%s" (include "fleet.fullname" $root) $name | trunc 63 | trimSuffix "-") }}
{{- $_ := set $merged "grouped" true }}
{{- $groups = append $groups $merged }}
{{- end }}
{{- else }}
{{- $merged := deepCopy $base }}
{{- $_ := set $merged "name" "worker" }}
{{- $_ := set $merged "deployment" (include "fleet.fullname" .) }}
{{- $_ := set $merged "grouped" false }}
{{- $groups = append $groups $merged }}
{{- end }}
{{- range $g := $groups }}
{{- range $queue := $g.queues }}
{{- if not (has $queue $defined) }}
{{- fail (printf "worker group %q: queue %q is not defined in queueDefinitions.queues (defined: %s)" $g.name $queue (join ", " $defined)) }}
{{- end }}
{{- end }}
{{- $_ := set $g "consumes" (default $defined $g.queues) }}
{{- end }}
{{- toYaml $groups }}
{{- end }}

{{/* The labels that tell one group's resources apart (beside fleet.labels); the
argument is a dict: root, group. */}}
{{- define "fleet.groupLabels" -}}
app.kubernetes.io/component: worker
{{- if .group.grouped }}
fleet/worker-group: {{ .group.name }}
{{- end }}
{{- end }}

{{/* Selector labels of one group's pods; the argument is a dict: root, group. */}}
{{- define "fleet.groupSelectorLabels" -}}
{{ include "fleet.selectorLabels" .root }}
{{ include "fleet.groupLabels" . }}
{{- end }}
