{{/*
Names, labels and the relay configuration the chart renders. Everything that more than one
template needs is computed here once.
*/}}

{{- define "whatsapp-relay.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name: "<release>-<chart>", or the release name alone when it already holds the chart name.
*/}}
{{- define "whatsapp-relay.fullname" -}}
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

{{- define "whatsapp-relay.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "whatsapp-relay.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: never the chart or app version, so selectors (immutable on a Deployment)
stay the same across upgrades.
*/}}
{{- define "whatsapp-relay.selectorLabels" -}}
app.kubernetes.io/name: {{ include "whatsapp-relay.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "whatsapp-relay.labels" -}}
helm.sh/chart: {{ include "whatsapp-relay.chart" . }}
{{ include "whatsapp-relay.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/component: webhook-relay
app.kubernetes.io/part-of: whatsapp-relay
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "whatsapp-relay.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "whatsapp-relay.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "whatsapp-relay.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "whatsapp-relay.configDir" -}}/etc/whatsapp-relay/config{{- end }}
{{- define "whatsapp-relay.configFile" -}}/etc/whatsapp-relay/config/relay.yaml{{- end }}
{{- define "whatsapp-relay.secretDir" -}}/etc/whatsapp-relay/secrets{{- end }}
{{- define "whatsapp-relay.kafkaCaDir" -}}/etc/whatsapp-relay/kafka-ca{{- end }}
{{- define "whatsapp-relay.kafkaClientCertDir" -}}/etc/whatsapp-relay/kafka-client{{- end }}
{{- define "whatsapp-relay.spoolDir" -}}/var/lib/whatsapp-relay/spool{{- end }}

{{/*
The workload: a Deployment, or with the spool on a persistent volume a StatefulSet, whose
volumeClaimTemplates give each pod a claim of its own ("true" then, else empty).
*/}}
{{- define "whatsapp-relay.statefulSet" -}}
{{- if and .Values.spool.enabled (eq .Values.spool.volume "persistentVolumeClaim") }}true{{- end }}
{{- end }}

{{- define "whatsapp-relay.workloadKind" -}}
{{- ternary "StatefulSet" "Deployment" (eq (include "whatsapp-relay.statefulSet" .) "true") }}
{{- end }}

{{/* The spool volume's size: spool.size, else config.spool.max_bytes (the relay's 1 GiB by
default) and a quarter more for the file system and the segment being written. */}}
{{- define "whatsapp-relay.spoolSize" -}}
{{- if .Values.spool.size }}
{{- .Values.spool.size }}
{{- else }}
{{- $maxBytes := ((.Values.config.spool | default dict).max_bytes | default 1073741824) | int64 }}
{{- div (mul $maxBytes 5) 4 }}
{{- end }}
{{- end }}

{{- define "whatsapp-relay.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "whatsapp-relay.fullname" .) }}
{{- end }}

{{/* The relay's ports, from the configuration the chart renders (relay defaults otherwise). */}}
{{- define "whatsapp-relay.serverPort" -}}
{{- $server := .Values.config.server | default dict }}
{{- hasKey $server "port" | ternary $server.port 8080 | int }}
{{- end }}

{{- define "whatsapp-relay.adminPort" -}}
{{- $admin := .Values.config.admin | default dict }}
{{- hasKey $admin "port" | ternary $admin.port 8081 | int }}
{{- end }}

{{- define "whatsapp-relay.webhookPath" -}}
{{- (.Values.config.server | default dict).path | default "/webhook" }}
{{- end }}

{{- define "whatsapp-relay.saslEnabled" -}}
{{- if hasPrefix "SASL_" ((.Values.config.kafka | default dict).security_protocol | default "PLAINTEXT") }}true{{- end }}
{{- end }}

{{/*
The Secret keys in use, as a JSON list: with an existingSecret, the keys it declares; with a
chart-created Secret, the ones that have a value. Fails early, at install time, on what the
relay would refuse at start-up.
*/}}
{{- define "whatsapp-relay.secretKeys" -}}
{{- $s := .Values.secrets }}
{{- $keys := list }}
{{- if $s.existingSecret }}
{{- $keys = $s.existingSecretKeys | default list | uniq }}
{{- else }}
{{- if $s.bearerTokens }}{{- $keys = append $keys "bearer_tokens" }}{{- end }}
{{- if $s.appSecrets }}{{- $keys = append $keys "app_secrets" }}{{- end }}
{{- if $s.verifyToken }}{{- $keys = append $keys "verify_token" }}{{- end }}
{{- if $s.kafkaSaslPassword }}{{- $keys = append $keys "kafka_sasl_password" }}{{- end }}
{{- end }}
{{- if not (or (has "bearer_tokens" $keys) (has "app_secrets" $keys)) }}
{{- if $s.existingSecret }}
{{- fail "secrets.existingSecretKeys must list bearer_tokens or app_secrets (the relay refuses to start without a credential)" }}
{{- else }}
{{- fail "set secrets.bearerTokens or secrets.appSecrets, or secrets.existingSecret (the relay refuses to start without a credential)" }}
{{- end }}
{{- end }}
{{- if include "whatsapp-relay.saslEnabled" . }}
{{- if not (has "kafka_sasl_password" $keys) }}
{{- fail "config.kafka.security_protocol is SASL_*: set secrets.kafkaSaslPassword (or list kafka_sasl_password in secrets.existingSecretKeys)" }}
{{- end }}
{{- if not (.Values.config.kafka).sasl_username }}
{{- fail "config.kafka.security_protocol is SASL_*: set config.kafka.sasl_username" }}
{{- end }}
{{- else if has "kafka_sasl_password" $keys }}
{{- $keys = without $keys "kafka_sasl_password" }}
{{- end }}
{{- toJson $keys }}
{{- end }}

{{/*
relay.yaml: the user's config, plus listener hosts, the mounted secret files and Kafka TLS
files. Secrets never go here.
*/}}
{{- define "whatsapp-relay.config" -}}
{{- $config := deepCopy (.Values.config | default dict) }}
{{- if hasKey $config "auth" }}
{{- fail "config.auth must stay empty: credentials go in secrets.* (or secrets.existingSecret), never in the ConfigMap" }}
{{- end }}
{{- $kafka := $config.kafka | default dict }}
{{- range $key := list "sasl_password" "sasl_password_file" "ssl_cafile" "ssl_certfile" "ssl_keyfile" }}
{{- if hasKey $kafka $key }}
{{- fail (printf "config.kafka.%s is set by the chart: use secrets.kafkaSaslPassword / kafkaTls instead" $key) }}
{{- end }}
{{- end }}
{{- $server := $config.server | default dict }}
{{- $_ := set $server "host" ($server.host | default "0.0.0.0") }}
{{- $_ := set $server "port" (include "whatsapp-relay.serverPort" . | int) }}
{{- $_ := set $config "server" $server }}
{{- $admin := $config.admin | default dict }}
{{- $_ := set $admin "host" ($admin.host | default "0.0.0.0") }}
{{- $_ := set $admin "port" (include "whatsapp-relay.adminPort" . | int) }}
{{- $_ := set $config "admin" $admin }}
{{- $secretDir := include "whatsapp-relay.secretDir" . }}
{{- $keys := include "whatsapp-relay.secretKeys" . | fromJsonArray }}
{{- $auth := dict }}
{{- range $key := list "bearer_tokens" "app_secrets" "verify_token" }}
{{- if has $key $keys }}
{{- $_ := set $auth (printf "%s_file" $key) (printf "%s/%s" $secretDir $key) }}
{{- end }}
{{- end }}
{{- $_ := set $config "auth" $auth }}
{{- if has "kafka_sasl_password" $keys }}
{{- $_ := set $kafka "sasl_password_file" (printf "%s/kafka_sasl_password" $secretDir) }}
{{- end }}
{{- with .Values.kafkaTls.ca }}
{{- if or .secretName .configMapName }}
{{- $_ := set $kafka "ssl_cafile" (printf "%s/%s" (include "whatsapp-relay.kafkaCaDir" $) .key) }}
{{- end }}
{{- end }}
{{- with .Values.kafkaTls.clientCert }}
{{- if .secretName }}
{{- $_ := set $kafka "ssl_certfile" (printf "%s/%s" (include "whatsapp-relay.kafkaClientCertDir" $) .certKey) }}
{{- $_ := set $kafka "ssl_keyfile" (printf "%s/%s" (include "whatsapp-relay.kafkaClientCertDir" $) .keyKey) }}
{{- end }}
{{- end }}
{{- $_ := set $config "kafka" $kafka }}
{{- $spool := $config.spool | default dict }}
{{- range $key := list "enabled" "directory" }}
{{- if hasKey $spool $key }}
{{- fail (printf "config.spool.%s is set by the chart: use spool.enabled (and spool.volume)" $key) }}
{{- end }}
{{- end }}
{{- if .Values.spool.enabled }}
{{- $_ := set $spool "enabled" true }}
{{- $_ := set $spool "directory" (include "whatsapp-relay.spoolDir" .) }}
{{- $_ := set $config "spool" $spool }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
terminationGracePeriodSeconds: it must outlast preStop + drain + shutdown timeout, or the
kubelet kills the relay in the middle of its flush and acked-but-unanswered requests are
retried by the sender (duplicates, not loss, but avoidable).
*/}}
{{- define "whatsapp-relay.terminationGracePeriodSeconds" -}}
{{- $shutdown := .Values.config.shutdown | default dict }}
{{- $drain := hasKey $shutdown "drain_seconds" | ternary $shutdown.drain_seconds 0 | float64 }}
{{- $timeout := hasKey $shutdown "timeout_seconds" | ternary $shutdown.timeout_seconds 10 | float64 }}
{{- $needed := addf (.Values.lifecycle.preStopSleepSeconds | float64) $drain $timeout }}
{{- $given := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $given }}
{{- add (ceil $needed | int) 5 }}
{{- else if le ($given | float64) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be above lifecycle.preStopSleepSeconds + config.shutdown.drain_seconds + config.shutdown.timeout_seconds (%v)" $given $needed) }}
{{- else }}
{{- $given | int }}
{{- end }}
{{- end }}
