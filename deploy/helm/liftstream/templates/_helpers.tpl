{{/* Names, labels and the environment every liftstream container shares. */}}

{{- define "liftstream.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "liftstream.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "liftstream.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "liftstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: include with (dict "root" $ "component" "x"). */}}
{{- define "liftstream.selector" -}}
app.kubernetes.io/name: {{ include "liftstream.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "liftstream.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "liftstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "liftstream.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "liftstream.secretName" -}}
{{- default (printf "%s-secrets" (include "liftstream.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "liftstream.env" -}}
- name: LIFTSTREAM_BOOTSTRAP
  value: {{ required "kafka.bootstrap: the Kafka cluster's host:port[,host:port...] is required" .Values.kafka.bootstrap | quote }}
- name: LIFTSTREAM_NAMESPACE
  value: {{ .Values.kafka.namespace | quote }}
- name: LIFTSTREAM_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
- name: LIFTSTREAM_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: LIFTSTREAM_MIN_INSYNC_REPLICAS
  value: {{ .Values.kafka.minInsyncReplicas | quote }}
- name: LIFTSTREAM_HOME
  value: /data
- name: LIFTSTREAM_METRICS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "liftstream.secretName" . }}
      key: metrics-token
{{- end -}}

{{/* The init container that creates the catalog's topics (idempotent) before a service. */}}
{{- define "liftstream.topicsInit" -}}
- name: topics
  image: {{ include "liftstream.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["python", "-m", "services.broker", "topics"]
  env:
    {{- include "liftstream.env" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    requests: {cpu: 50m, memory: 128Mi}
    limits: {memory: 256Mi}
{{- end -}}

{{/* /healthz for liveness and start-up, /readyz for readiness, on the named port. */}}
{{- define "liftstream.probes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 5
  failureThreshold: 60
livenessProbe:
  httpGet: {path: /healthz, port: http}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: http}
  periodSeconds: 5
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{- define "liftstream.podCommon" -}}
serviceAccountName: {{ include "liftstream.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
