{{/* Names ---------------------------------------------------------------------------------- */}}

{{- define "tidings.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tidings.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* `<fullname>-<suffix>`, cut to a DNS label. Usage: include "tidings.component" (list $ "gateway") */}}
{{- define "tidings.component" -}}
{{- printf "%s-%s" (include "tidings.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels --------------------------------------------------------------------------------- */}}

{{- define "tidings.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tidings.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tidings.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "tidings.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: tidings
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- with $root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Images: include "tidings.image" (list $ "gateway") -> repo:tag[@digest] */}}
{{- define "tidings.image" -}}
{{- $root := index . 0 -}}
{{- $img := index $root.Values.images (index . 1) -}}
{{- $ref := printf "%s:%s" $img.repository (default $root.Chart.AppVersion $img.tag) -}}
{{- if $img.digest -}}{{- $ref = printf "%s@%s" $ref $img.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* Pull policy: as set, else Always for a tag (it may move) and IfNotPresent for a digest. */}}
{{- define "tidings.imagePullPolicy" -}}
{{- $img := index (index . 0).Values.images (index . 1) -}}
{{- $img.pullPolicy | default (ternary "IfNotPresent" "Always" (ne $img.digest "")) -}}
{{- end -}}

{{- define "tidings.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The gateway's grace period: explicit, or preStop + drain + 10 s for the last closes. */}}
{{- define "tidings.gateway.gracePeriod" -}}
{{- $g := .Values.gateway -}}
{{- $floor := add (int $g.preStopSeconds) (int (ceil $g.drainSeconds)) -}}
{{- if kindIs "invalid" $g.terminationGracePeriodSeconds -}}
{{- add $floor 10 -}}
{{- else if le (int $g.terminationGracePeriodSeconds) $floor -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds (%d) must exceed gateway.preStopSeconds + gateway.drainSeconds (%d): Kubernetes would kill gateways in the middle of their drain" (int $g.terminationGracePeriodSeconds) $floor) -}}
{{- else -}}
{{- int $g.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}

{{/* NATS --------------------------------------------------------------------------------------
Each takes (dict "root" $ "component" "gateway|init|publisher"); they render the env entries,
volume mounts and volumes that carry one component's NATS credentials and TLS files. */}}

{{- define "tidings.nats.secretName" -}}
{{- $c := index .root.Values.nats.credentials .component -}}
{{- $c.existingSecret | default (include "tidings.component" (list .root (printf "nats-%s" .component))) -}}
{{- end -}}

{{/* Whether the chart itself creates the component's credentials Secret. */}}
{{- define "tidings.nats.ownsSecret" -}}
{{- $c := index .root.Values.nats.credentials .component -}}
{{- if and (ne $c.method "none") (not $c.existingSecret) -}}true{{- end -}}
{{- end -}}

{{- define "tidings.nats.secretData" -}}
{{- $c := index .root.Values.nats.credentials .component -}}
{{- $where := printf "nats.credentials.%s" .component -}}
{{- if not (include "tidings.nats.ownsSecret" .) }}
{{- else if eq $c.method "password" }}
password: {{ required (printf "%s.password (or %s.existingSecret) is required with method password" $where $where) $c.password | b64enc | quote }}
{{- else if eq $c.method "token" }}
token: {{ required (printf "%s.token (or %s.existingSecret) is required with method token" $where $where) $c.token | b64enc | quote }}
{{- else if eq $c.method "creds" }}
nats.creds: {{ required (printf "%s.creds (or %s.existingSecret) is required with method creds" $where $where) $c.creds | b64enc | quote }}
{{- else if eq $c.method "nkey" }}
nkey.seed: {{ required (printf "%s.nkeySeed (or %s.existingSecret) is required with method nkey" $where $where) $c.nkeySeed | b64enc | quote }}
{{- end }}
{{- end -}}

{{- define "tidings.nats.env" -}}
{{- $root := .root -}}
{{- $c := index $root.Values.nats.credentials .component -}}
{{- $secret := include "tidings.nats.secretName" . -}}
- name: TIDINGS_NATS_URLS
  value: {{ join "," $root.Values.nats.urls | quote }}
- name: TIDINGS_NATS_NAME
  value: {{ printf "tidings-%s" .component | quote }}
{{- if eq $c.method "password" }}
- name: TIDINGS_NATS_USER
  value: {{ $c.user | quote }}
- name: TIDINGS_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: password
{{- else if eq $c.method "token" }}
- name: TIDINGS_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: token
{{- else if eq $c.method "creds" }}
- name: TIDINGS_NATS_CREDS_FILE
  value: /etc/tidings/nats-auth/nats.creds
{{- else if eq $c.method "nkey" }}
- name: TIDINGS_NATS_NKEY_SEED_FILE
  value: /etc/tidings/nats-auth/nkey.seed
{{- end }}
{{- with $root.Values.nats.tls }}
{{- if .enabled }}
- name: TIDINGS_NATS_TLS_CA_FILE
  value: /etc/tidings/nats-tls/ca.crt
{{- if .clientCert }}
- name: TIDINGS_NATS_TLS_CERT_FILE
  value: /etc/tidings/nats-tls/tls.crt
- name: TIDINGS_NATS_TLS_KEY_FILE
  value: /etc/tidings/nats-tls/tls.key
{{- end }}
{{- with .hostname }}
- name: TIDINGS_NATS_TLS_HOSTNAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tidings.nats.volumeMounts" -}}
{{- $c := index .root.Values.nats.credentials .component -}}
{{- if has $c.method (list "creds" "nkey") }}
- name: nats-auth
  mountPath: /etc/tidings/nats-auth
  readOnly: true
{{- end }}
{{- if .root.Values.nats.tls.enabled }}
- name: nats-tls
  mountPath: /etc/tidings/nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tidings.nats.volumes" -}}
{{- $c := index .root.Values.nats.credentials .component -}}
{{- if has $c.method (list "creds" "nkey") }}
- name: nats-auth
  secret:
    secretName: {{ include "tidings.nats.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ ternary "nats.creds" "nkey.seed" (eq $c.method "creds") }}
        path: {{ ternary "nats.creds" "nkey.seed" (eq $c.method "creds") }}
{{- end }}
{{- with .root.Values.nats.tls }}
{{- if .enabled }}
- name: nats-tls
  secret:
    secretName: {{ required "nats.tls.enabled needs nats.tls.secretName (a Secret with ca.crt, and tls.crt/tls.key for clientCert)" .secretName }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end -}}

{{/* Auth (gateway) ------------------------------------------------------------------------ */}}

{{- define "tidings.adminToken.secretName" -}}
{{- .Values.gateway.adminToken.existingSecret | default (include "tidings.component" (list . "admin")) -}}
{{- end -}}

{{- define "tidings.auth.secretName" -}}
{{- .Values.auth.existingSecret | default (include "tidings.component" (list . "auth")) -}}
{{- end -}}

{{/* Pod pieces shared by every workload ---------------------------------------------------- */}}

{{- define "tidings.podSecurityContext" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{- define "tidings.securityContext" -}}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* Fails early, with the value to fix, on combinations the schema cannot express. */}}
{{- define "tidings.validate" -}}
{{- $a := .Values.auth -}}
{{- if and (eq $a.method "publicKey") (not $a.existingSecret) (not $a.publicKey) -}}
{{- fail "auth.method=publicKey needs auth.publicKey (a PEM) or auth.existingSecret (key public-key.pem)" -}}
{{- end -}}
{{- if and (eq $a.method "jwks") (not $a.jwksUrl) -}}
{{- fail "auth.method=jwks needs auth.jwksUrl" -}}
{{- end -}}
{{- if and .Values.nats.tls.enabled (not .Values.nats.tls.secretName) -}}
{{- fail "nats.tls.enabled needs nats.tls.secretName (a Secret with ca.crt, and tls.crt/tls.key for clientCert)" -}}
{{- end -}}
{{- if hasKey .Values.gateway.extraConfig "TIDINGS_GATEWAY_DEMO" -}}
{{- fail "gateway.extraConfig.TIDINGS_GATEWAY_DEMO is refused: the demo mode mints tokens for anyone and is for `tidings dev` only" -}}
{{- end -}}
{{- if and .Values.gateway.adminToken.existingSecret .Values.gateway.adminToken.generate -}}
{{- fail "gateway.adminToken: give existingSecret or generate, not both" -}}
{{- end -}}
{{- $_ := include "tidings.gateway.gracePeriod" . -}}
{{- end -}}

{{/* topologySpreadConstraints from a values list: each gets the component's labelSelector
unless it brings its own. Usage: include "tidings.topologySpread" (list $ "gateway" $list) */}}
{{- define "tidings.topologySpread" -}}
{{- $root := index . 0 -}}
{{- $selector := dict "matchLabels" (include "tidings.selectorLabels" (list $root (index . 1)) | fromYaml) -}}
{{- range index . 2 }}
- {{ toYaml (merge (deepCopy .) (dict "labelSelector" $selector)) | nindent 2 | trim }}
{{- end }}
{{- end -}}

{{/* Egress every Tidings process needs: DNS, and NATS. */}}
{{- define "tidings.networkPolicy.egress" -}}
{{- $n := .Values.networkPolicy -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    - port: {{ $n.natsPort }}
      protocol: TCP
  to:
    {{- if $n.natsPeers }}
    {{- toYaml $n.natsPeers | nindent 4 }}
    {{- else }}
    - podSelector: {}
    {{- end }}
{{- end -}}

{{/* Settings every service that verifies tokens shares (gateway, inbox): stream, auth, logs,
traces. Rendered into each one's ConfigMap. */}}
{{- define "tidings.config.common" -}}
{{- $a := .Values.auth -}}
TIDINGS_STREAM_NAME: {{ .Values.stream.name | quote }}
{{- if eq $a.method "publicKey" }}
TIDINGS_AUTH_JWT_PUBLIC_KEY_FILE: /etc/tidings/auth/public-key.pem
{{- else if eq $a.method "jwks" }}
TIDINGS_AUTH_JWKS_URL: {{ $a.jwksUrl | quote }}
{{- end }}
{{- with $a.algorithms }}
TIDINGS_AUTH_ALGORITHMS: {{ join "," . | quote }}
{{- end }}
{{- with $a.audience }}
TIDINGS_AUTH_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with $a.issuer }}
TIDINGS_AUTH_ISSUER: {{ . | quote }}
{{- end }}
TIDINGS_AUTH_LEEWAY: {{ $a.leeway | toString | quote }}
TIDINGS_AUTH_USER_CLAIM: {{ $a.claims.user | quote }}
TIDINGS_AUTH_TENANT_CLAIM: {{ $a.claims.tenant | quote }}
TIDINGS_AUTH_ROLES_CLAIM: {{ $a.claims.roles | quote }}
TIDINGS_AUTH_ROOMS_CLAIM: {{ $a.claims.rooms | quote }}
TIDINGS_LOG_LEVEL: {{ .Values.log.level | quote }}
TIDINGS_LOG_FORMAT: {{ .Values.log.format | quote }}
TIDINGS_TELEMETRY_EXPORTER: {{ .Values.telemetry.exporter | quote }}
TIDINGS_TELEMETRY_SAMPLE_RATIO: {{ .Values.telemetry.sampleRatio | toString | quote }}
{{- with .Values.telemetry.otlpEndpoint }}
TIDINGS_TELEMETRY_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- end -}}
