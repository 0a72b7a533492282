{{/* Chart name. */}}
{{- define "chordnet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the objects. It prefixes the pods' DNS names (<fullname>-<ordinal>), so it is
kept short enough for "-headless" and the ordinal to fit in 63 characters.
*/}}
{{- define "chordnet.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The headless Service: every peer's DNS name is <pod>.<this>.<namespace>.svc.<domain>. */}}
{{- define "chordnet.headlessName" -}}
{{- printf "%s-headless" (include "chordnet.fullname" .) }}
{{- end }}

{{- define "chordnet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "chordnet.labels" -}}
helm.sh/chart: {{ include "chordnet.chart" . }}
{{ include "chordnet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chordnet
{{- end }}

{{/* Labels every object of the release carries. */}}
{{- define "chordnet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chordnet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selects the peer pods only (not the helm test pod). */}}
{{- define "chordnet.peerSelectorLabels" -}}
{{ include "chordnet.selectorLabels" . }}
app.kubernetes.io/component: peer
{{- end }}

{{- define "chordnet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chordnet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "chordnet.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* A listen address: listenHost and a port, with brackets around an IPv6 host. */}}
{{- define "chordnet.listen" -}}
{{- $host := .root.Values.listenHost }}
{{- if contains ":" $host }}
{{- printf "[%s]:%v" $host .port }}
{{- else }}
{{- printf "%s:%v" $host .port }}
{{- end }}
{{- end }}

{{/*
The advertised peer address of ordinal .ordinal; $(POD_NAMESPACE) is expanded by the kubelet
from the downward-API variable, so the objects do not depend on the release namespace.
*/}}
{{- define "chordnet.peerAddress" -}}
{{- if eq (include "chordnet.transportKind" .root) "nats" }}
{{- printf "chordnet.%s.peer.%s-%v" (include "chordnet.ringName" .root) (include "chordnet.fullname" .root) .ordinal }}
{{- else }}
{{- printf "%s-%v.%s.$(POD_NAMESPACE).svc.%s:%v" (include "chordnet.fullname" .root) .ordinal (include "chordnet.headlessName" .root) .root.Values.clusterDomain .root.Values.ports.peer }}
{{- end }}
{{- end }}

{{/* nats.ringName (default "default": a release made by a chart without nats.* keeps working). */}}
{{- define "chordnet.ringName" -}}
{{- default "default" (default dict .Values.nats).ringName }}
{{- end }}

{{/*
The NATS broker and the ring events, as environment variables: the broker's URL, ring name
and credential files when transport.kind is nats or events are enabled; the events' keys when
they are enabled. Credentials come from the Secret nats.credentials.name, mounted read-only at
/var/run/chordnet/nats.
*/}}
{{- define "chordnet.natsEnv" -}}
{{- $n := default dict .Values.nats }}
{{- $e := default dict .Values.events }}
{{- $c := default dict $n.credentials }}
{{- if or (eq (include "chordnet.transportKind" .) "nats") $e.enabled }}
- name: CHORDNET_NATS__URL
  value: {{ default "nats://nats:4222" $n.url | quote }}
- name: CHORDNET_NATS__RING_NAME
  value: {{ include "chordnet.ringName" . | quote }}
{{- if and $c.name $c.credsKey }}
- name: CHORDNET_NATS__CREDENTIALS_FILE
  value: /var/run/chordnet/nats/creds
{{- end }}
{{- if and $c.name $c.tokenKey }}
- name: CHORDNET_NATS__TOKEN_FILE
  value: /var/run/chordnet/nats/token
{{- end }}
{{- with include "chordnet.natsTls" . | fromYaml }}
{{- if .secretName }}
# TLS to the broker (nats.tls): the broker's CA, and the peers' client certificate.
- name: CHORDNET_NATS__TLS_CA_FILE
  value: /var/run/chordnet/nats-tls/ca.crt
{{- if .clientCertificate }}
- name: CHORDNET_NATS__TLS_CERT_FILE
  value: /var/run/chordnet/nats-tls/tls.crt
- name: CHORDNET_NATS__TLS_KEY_FILE
  value: /var/run/chordnet/nats-tls/tls.key
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if $e.enabled }}
- name: CHORDNET_EVENTS__ENABLED
  value: "true"
{{- with $e.stream }}
- name: CHORDNET_EVENTS__STREAM
  value: {{ . | quote }}
{{- end }}
- name: CHORDNET_EVENTS__MAX_AGE
  value: {{ default "7days" $e.maxAge | quote }}
- name: CHORDNET_EVENTS__MAX_BYTES
  value: {{ default "1GiB" $e.maxBytes | quote }}
{{- end }}
{{- end }}

{{/*
nats.tls with its defaults, as YAML; secretName is empty unless the broker is used (the NATS
transport or the events), so nothing is mounted for a broker nobody talks to.
*/}}
{{- define "chordnet.natsTls" -}}
{{- $t := default dict (default dict .Values.nats).tls }}
{{- $used := or (eq (include "chordnet.transportKind" .) "nats") (default dict .Values.events).enabled }}
secretName: {{ ternary (default "" $t.secretName) "" (not (not $used)) | quote }}
clientCertificate: {{ if $t.clientCertificate }}true{{ else }}false{{ end }}
{{- end }}

{{/* Whether the NATS credentials Secret is mounted (used by the transport or the events). */}}
{{- define "chordnet.natsCredentials" -}}
{{- $c := default dict (default dict .Values.nats).credentials }}
{{- if and $c.name (or $c.credsKey $c.tokenKey) (or (eq (include "chordnet.transportKind" .) "nats") (default dict .Values.events).enabled) }}true{{ end }}
{{- end }}

{{/* Seeds: the advertised addresses of ordinals 0..replicaCount-1, comma-separated. */}}
{{- define "chordnet.seeds" -}}
{{- $root := . }}
{{- $seeds := list }}
{{- range $i := until (int .Values.replicaCount) }}
{{- $seeds = append $seeds (include "chordnet.peerAddress" (dict "root" $root "ordinal" $i)) }}
{{- end }}
{{- join "," $seeds }}
{{- end }}

{{/* One TOML value: strings quoted, whole numbers without a decimal point, lists as arrays. */}}
{{- define "chordnet.tomlValue" -}}
{{- if kindIs "string" . }}
{{- . | toJson }}
{{- else if kindIs "bool" . }}
{{- . }}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) }}
{{- if eq (float64 .) (floor .) }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else if or (kindIs "int" .) (kindIs "int64" .) }}
{{- . }}
{{- else if kindIs "slice" . }}
{{- $items := list }}
{{- range . }}{{ $items = append $items (include "chordnet.tomlValue" .) }}{{ end }}
{{- printf "[%s]" (join ", " $items) }}
{{- else }}
{{- fail (printf "config: cannot write %v (%s) as a TOML value" . (kindOf .)) }}
{{- end }}
{{- end }}

{{/* The peer's TOML configuration file, from .Values.config (sections of scalar keys). */}}
{{- define "chordnet.configToml" -}}
# chordnet peer configuration (rendered by the Helm chart from .Values.config).
# Environment variables CHORDNET_* override it: the chart sets the node address, the listen
# addresses, the seeds and the directories that way.
{{- range $section, $body := .Values.config }}
{{- if not (kindIs "map" $body) }}
{{- fail (printf "config.%s must be a table (map)" $section) }}
{{- end }}

[{{ $section }}]
{{- range $key, $value := $body }}
{{ $key }} = {{ include "chordnet.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Fails when the graceful leave cannot finish before the kubelet kills the pod. Understands leave
timeouts written as whole seconds ("20s") or minutes ("1m"); other forms are not checked.
*/}}
{{- define "chordnet.checkGracePeriod" -}}
{{- $leave := toString (dig "ring" "leave_timeout" "" .Values.config) }}
{{- $seconds := -1 }}
{{- if regexMatch "^[0-9]+s$" $leave }}
{{- $seconds = trimSuffix "s" $leave | atoi }}
{{- else if regexMatch "^[0-9]+m$" $leave }}
{{- $seconds = mul (trimSuffix "m" $leave | atoi) 60 }}
{{- end }}
{{- if and (ge $seconds 0) (le (int .Values.terminationGracePeriodSeconds) $seconds) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must be longer than config.ring.leave_timeout (%s)" .Values.terminationGracePeriodSeconds $leave) }}
{{- end }}
{{- end }}

{{/*
tracing.* with the defaults of values.yaml filled in, as YAML: `helm upgrade --reuse-values` of a
release installed by an older chart version keeps that version's defaults, which lack tracing.
*/}}
{{- define "chordnet.tracing" -}}
{{- $t := default dict .Values.tracing }}
{{- $secret := default dict $t.headersSecret }}
endpoint: {{ default "" $t.endpoint | quote }}
protocol: {{ default "http/protobuf" $t.protocol | quote }}
headers: {{ default "" $t.headers | quote }}
headersSecret:
  name: {{ default "" $secret.name | quote }}
  key: {{ default "headers" $secret.key | quote }}
timeout: {{ int64 (default 10000 $t.timeout) }}
serviceName: {{ default "chordnet" $t.serviceName | quote }}
sampler: {{ default "parentbased_traceidratio" $t.sampler | quote }}
samplerArg: {{ ternary $t.samplerArg "1.0" (hasKey $t "samplerArg") | toString | quote }}
resourceAttributes:
  {{- toYaml (default dict $t.resourceAttributes) | nindent 2 }}
{{- end }}

{{/*
The peer container's OTEL_* variables (OpenTelemetry trace export). Nothing at all while
tracing.endpoint is empty: the peer exports traces only when an endpoint variable is set.
*/}}
{{- define "chordnet.tracingEnv" -}}
{{- $t := include "chordnet.tracing" . | fromYaml }}
{{- if and $t.headers $t.headersSecret.name }}
{{- fail "tracing.headers and tracing.headersSecret.name are both set: choose one (a Secret for API keys)" }}
{{- end }}
{{- if $t.endpoint }}
{{- $attrs := dict "k8s.statefulset.name" (include "chordnet.fullname" .) "k8s.node.name" "$(NODE_NAME)" }}
{{- $attrs = merge (deepCopy $t.resourceAttributes) $attrs }}
{{- $pairs := list }}
{{- range $key, $value := $attrs }}
{{- $pairs = append $pairs (printf "%s=%s" $key $value) }}
{{- end }}
# The node the pod runs on, for the k8s.node.name resource attribute.
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
# Trace export (tracing.*). The peer adds chordnet.node.id, chordnet.ring.id, k8s.pod.name
# (POD_NAME) and k8s.namespace.name (POD_NAMESPACE) to the resource attributes itself.
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ $t.protocol | quote }}
{{- if $t.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ $t.headersSecret.name | quote }}
      key: {{ $t.headersSecret.key | quote }}
{{- else if $t.headers }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  value: {{ $t.headers | quote }}
{{- end }}
- name: OTEL_EXPORTER_OTLP_TIMEOUT
  value: {{ int64 $t.timeout | toString | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ $t.serviceName | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ $t.sampler | quote }}
{{- if and (contains "traceidratio" $t.sampler) $t.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ $t.samplerArg | quote }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- end }}

{{/*
transport.* with the defaults of values.yaml filled in (a release installed by a chart version
without transport.* keeps that version's values on `helm upgrade --reuse-values`).
*/}}
{{- define "chordnet.transportKind" -}}
{{- default "http" (default dict .Values.transport).kind }}
{{- end }}

{{- define "chordnet.grpcReadinessProbe" -}}
{{- $t := default dict .Values.transport }}
{{- if and (eq (include "chordnet.transportKind" .) "grpc") $t.grpcReadinessProbe }}true{{ end }}
{{- end }}

{{/*
security.* with the defaults of values.yaml filled in, as YAML (a release installed by a chart
version without security.* keeps that version's values on `helm upgrade --reuse-values`).
Refuses protectMetrics without API tokens: there would be no token to protect /metrics with.
*/}}
{{- define "chordnet.security" -}}
{{- $s := default dict .Values.security }}
{{- $ring := default dict $s.ringSecret }}
{{- $api := default dict $s.apiTokens }}
{{- $tls := default dict $s.tls }}
{{- $issuer := default dict $tls.issuerRef }}
{{- if $tls.enabled }}
{{- if eq (include "chordnet.grpcReadinessProbe" .) "true" }}
{{- fail "security.tls.enabled with transport.grpcReadinessProbe: Kubernetes' gRPC probe cannot present a client certificate; turn the gRPC probe off (the /readyz probe applies the same rules)" }}
{{- end }}
{{- if eq (empty $issuer.name) (empty $tls.secretName) }}
{{- fail "security.tls.enabled needs exactly one of security.tls.issuerRef.name (cert-manager) and security.tls.secretName (an existing Secret)" }}
{{- end }}
{{- if eq (include "chordnet.transportKind" .) "nats" }}
{{- fail "security.tls.enabled with transport.kind nats: NATS peers have no peer port (they talk through the broker); use security.ringSecret" }}
{{- end }}
{{- end }}
{{- if and $api.protectMetrics (not $api.name) }}
{{- fail "security.apiTokens.protectMetrics is true but security.apiTokens.name is empty: /metrics can only be protected with API tokens (set security.apiTokens.name to a Secret holding them)" }}
{{- end }}
ringSecret:
  name: {{ default "" $ring.name | quote }}
  key: {{ default "ring-secret" $ring.key | quote }}
  dir: /var/run/chordnet/ring-secret
  file: keys
apiTokens:
  name: {{ default "" $api.name | quote }}
  key: {{ default "api-tokens" $api.key | quote }}
  testTokenKey: {{ default "test-token" $api.testTokenKey | quote }}
  protectMetrics: {{ if $api.protectMetrics }}true{{ else }}false{{ end }}
  metricsTokenKey: {{ default "metrics-token" $api.metricsTokenKey | quote }}
  dir: /var/run/chordnet/api-tokens
  file: tokens
tls:
  enabled: {{ if $tls.enabled }}true{{ else }}false{{ end }}
  issuerRef:
    name: {{ default "" $issuer.name | quote }}
    kind: {{ default "Issuer" $issuer.kind | quote }}
    group: {{ default "cert-manager.io" $issuer.group | quote }}
  certificates: {{ default "perPod" $tls.certificates | quote }}
  perPod: {{ if and $tls.enabled $issuer.name (eq (default "perPod" $tls.certificates) "perPod") }}true{{ else }}false{{ end }}
  duration: {{ default "2160h" $tls.duration | quote }}
  renewBefore: {{ default "360h" $tls.renewBefore | quote }}
  secretName: {{ default (printf "%s-peer-tls" (include "chordnet.fullname" .)) $tls.secretName | quote }}
  dir: /var/run/chordnet/tls
{{- end }}

{{/*
The advertised host of every peer pod in the cert-manager csi-driver's own syntax: the driver
expands ${POD_NAME} and ${POD_NAMESPACE} at mount time (the kubelet's $(VAR) is not expanded in
volume attributes), so each pod's certificate names exactly the host its node id is the SHA-1 of.
*/}}
{{- define "chordnet.csiDnsName" -}}
{{- printf "${POD_NAME}.%s.${POD_NAMESPACE}.svc.%s" (include "chordnet.headlessName" .) .Values.clusterDomain }}
{{- end }}

{{/*
Mode of the files of the Secret volumes: read-only for their owner (root) and the pod's fsGroup,
which the peer's user belongs to; without an fsGroup the files stay root's, so everyone may read.
*/}}
{{- define "chordnet.secretMode" -}}
{{- if (default dict .Values.podSecurityContext).fsGroup }}288{{ else }}292{{ end }}
{{- end }}

{{/* The helm test pod's containers: a token of the API tokens Secret (it must be a write token). */}}
{{- define "chordnet.testTokenEnv" -}}
{{- $api := (include "chordnet.security" . | fromYaml).apiTokens }}
{{- if $api.name }}
env:
  - name: CHORDNET_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ $api.name | quote }}
        key: {{ $api.testTokenKey | quote }}
{{- end }}
{{- end }}
