{{/*
The publisher sidecar, for any chart whose pods produce notifications (README.md, "Publisher
sidecar"). Add this chart as a dependency, then in your pod spec:

  {{- $tidings := dict
        "image" "ghcr.io/tidings/publisher:0.1.0"
        "natsUrls" (list "nats://nats.messaging:4222")
        "credentials" (dict "method" "password" "user" "tidings-publisher" "secretName" "orders-nats")
        "source" "orders-svc" }}
  initContainers:            # a native sidecar: starts before your app, stops after it
    {{- include "tidings.publisher.sidecar" $tidings | nindent 4 }}
  volumes:
    {{- include "tidings.publisher.volumes" $tidings | nindent 4 }}

and point your app at http://127.0.0.1:8081/v1/notifications. Set "native" false to render it
for `containers:` instead (clusters without native sidecars).

Parameters (only image and natsUrls are required):
  image, imagePullPolicy (IfNotPresent), natsUrls (list), port (8081), source (""),
  native (true), allowBroadcast (false), streamName ("TIDINGS"),
  insecure (false: the template refuses to render a sidecar that connects to NATS with neither a
      credential (method password/token/creds/nkey) nor a client certificate (tls.clientCert,
      mTLS); true only for a development NATS without users),
  apiToken: {secretName, key ("token")}: TIDINGS_PUBLISHER_TOKEN from a Secret (the bearer
      token callers must send; optional beside its producer on loopback),
  credentials: {method: none|password|token|creds|nkey, user, secretName}
      the Secret holds `password`, `token`, `nats.creds` or `nkey.seed`;
  tls: {enabled, secretName (ca.crt [, tls.crt, tls.key]), clientCert, hostname},
  outbox: {maxMessages, maxBytes, volume (a volume source; default emptyDir 512Mi)},
  quotas: {enabled, rate, burst, daily}: per-tenant publish quotas (docs/security.md "Quotas";
      per-tenant limits are set with `tidings quota set`; these are the defaults),
  events: {extra (list), allowUnknown}, log: {level, format}, resources, securityContext.
The sidecar binds loopback only, so its probes run inside the container (exec), not from the
kubelet.
*/}}

{{- define "tidings.publisher.probe" -}}
exec:
  command:
    - python
    - -c
    - {{ printf "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d%s', timeout=2)" (int .port) .path | quote }}
{{- end -}}

{{- define "tidings.publisher.sidecar" -}}
{{- $port := int (.port | default 8081) -}}
{{- $creds := .credentials | default dict -}}
{{- $method := $creds.method | default "none" -}}
{{- $tls := .tls | default dict -}}
{{- $apiToken := .apiToken | default dict -}}
{{- if and (eq $method "none") (not (and $tls.enabled $tls.clientCert)) (not .insecure) -}}
{{- fail "tidings.publisher.sidecar: the publisher would connect to NATS without a credential: anyone reaching NATS could then publish to every tenant. Give credentials.method (password, token, creds or nkey; in this chart nats.credentials.publisher) or a client certificate (tls.enabled and tls.clientCert: mTLS). Only for a development NATS without users: insecure=true (this chart: publisher.insecureNats)" -}}
{{- end -}}
{{- $outbox := .outbox | default dict -}}
{{- $quotas := .quotas | default dict -}}
{{- $events := .events | default dict -}}
{{- $log := .log | default dict -}}
- name: tidings-publisher
  image: {{ required "tidings.publisher.sidecar: image is required" .image | quote }}
  imagePullPolicy: {{ .imagePullPolicy | default "IfNotPresent" }}
  {{- if (hasKey . "native" | ternary .native true) }}
  restartPolicy: Always
  {{- end }}
  env:
    - name: TIDINGS_PUBLISHER_HOST
      value: "127.0.0.1"
    - name: TIDINGS_PUBLISHER_PORT
      value: {{ $port | quote }}
    - name: TIDINGS_PUBLISHER_OUTBOX_DIR
      value: /var/lib/tidings/outbox
    {{- with .source }}
    - name: TIDINGS_PUBLISHER_SOURCE
      value: {{ . | quote }}
    {{- end }}
    {{- with $apiToken.secretName }}
    - name: TIDINGS_PUBLISHER_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: {{ $apiToken.key | default "token" }}
    {{- end }}
    {{- if .allowBroadcast }}
    - name: TIDINGS_PUBLISHER_ALLOW_BROADCAST
      value: "true"
    {{- end }}
    {{- if $quotas.enabled }}
    - name: TIDINGS_QUOTA_ENABLED
      value: "true"
    {{- range $key, $name := dict "rate" "TIDINGS_QUOTA_RATE" "burst" "TIDINGS_QUOTA_BURST" "daily" "TIDINGS_QUOTA_DAILY" }}
    {{- with (get $quotas $key) }}
    - name: {{ $name }}
      value: {{ . | toString | quote }}
    {{- end }}
    {{- end }}
    {{- end }}
    {{- with $outbox.maxMessages }}
    - name: TIDINGS_PUBLISHER_OUTBOX_MAX_MESSAGES
      value: {{ . | toString | quote }}
    {{- end }}
    {{- with $outbox.maxBytes }}
    - name: TIDINGS_PUBLISHER_OUTBOX_MAX_BYTES
      value: {{ . | toString | quote }}
    {{- end }}
    - name: TIDINGS_STREAM_NAME
      value: {{ .streamName | default "TIDINGS" | quote }}
    {{- with $events.extra }}
    - name: TIDINGS_EVENTS_EXTRA
      value: {{ join "," . | quote }}
    {{- end }}
    {{- if $events.allowUnknown }}
    - name: TIDINGS_EVENTS_ALLOW_UNKNOWN
      value: "true"
    {{- end }}
    - name: TIDINGS_LOG_LEVEL
      value: {{ $log.level | default "INFO" | quote }}
    - name: TIDINGS_LOG_FORMAT
      value: {{ $log.format | default "json" | quote }}
    - name: TIDINGS_NATS_URLS
      value: {{ join "," (required "tidings.publisher.sidecar: natsUrls is required" .natsUrls) | quote }}
    - name: TIDINGS_NATS_NAME
      value: tidings-publisher
    {{- if eq $method "password" }}
    - name: TIDINGS_NATS_USER
      value: {{ required "tidings.publisher.sidecar: credentials.user is required with method password" $creds.user | quote }}
    - name: TIDINGS_NATS_PASSWORD
      valueFrom:
        secretKeyRef:
          name: {{ required "tidings.publisher.sidecar: credentials.secretName is required" $creds.secretName }}
          key: password
    {{- else if eq $method "token" }}
    - name: TIDINGS_NATS_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ required "tidings.publisher.sidecar: credentials.secretName is required" $creds.secretName }}
          key: token
    {{- else if eq $method "creds" }}
    - name: TIDINGS_NATS_CREDS_FILE
      value: /etc/tidings/nats-auth/nats.creds
    {{- else if eq $method "nkey" }}
    - name: TIDINGS_NATS_NKEY_SEED_FILE
      value: /etc/tidings/nats-auth/nkey.seed
    {{- end }}
    {{- if $tls.enabled }}
    - name: TIDINGS_NATS_TLS_CA_FILE
      value: /etc/tidings/nats-tls/ca.crt
    {{- if $tls.clientCert }}
    - name: TIDINGS_NATS_TLS_CERT_FILE
      value: /etc/tidings/nats-tls/tls.crt
    - name: TIDINGS_NATS_TLS_KEY_FILE
      value: /etc/tidings/nats-tls/tls.key
    {{- end }}
    {{- with $tls.hostname }}
    - name: TIDINGS_NATS_TLS_HOSTNAME
      value: {{ . | quote }}
    {{- end }}
    {{- end }}
  ports:
    - name: publisher
      containerPort: {{ $port }}
      protocol: TCP
  startupProbe:
    {{- include "tidings.publisher.probe" (dict "port" $port "path" "/healthz") | nindent 4 }}
    periodSeconds: 1
    timeoutSeconds: 3
    failureThreshold: 30
  livenessProbe:
    {{- include "tidings.publisher.probe" (dict "port" $port "path" "/healthz") | nindent 4 }}
    periodSeconds: 20
    timeoutSeconds: 3
    failureThreshold: 3
  readinessProbe:
    {{- include "tidings.publisher.probe" (dict "port" $port "path" "/readyz") | nindent 4 }}
    periodSeconds: 10
    timeoutSeconds: 3
    failureThreshold: 2
  resources:
    {{- toYaml (.resources | default (dict "requests" (dict "cpu" "50m" "memory" "96Mi") "limits" (dict "cpu" "500m" "memory" "256Mi"))) | nindent 4 }}
  securityContext:
    {{- toYaml (.securityContext | default (dict "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "runAsNonRoot" true "runAsUser" 10001 "runAsGroup" 10001 "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault"))) | nindent 4 }}
  volumeMounts:
    - name: tidings-outbox
      mountPath: /var/lib/tidings/outbox
    - name: tidings-publisher-tmp
      mountPath: /tmp
    {{- if has $method (list "creds" "nkey") }}
    - name: tidings-nats-auth
      mountPath: /etc/tidings/nats-auth
      readOnly: true
    {{- end }}
    {{- if $tls.enabled }}
    - name: tidings-nats-tls
      mountPath: /etc/tidings/nats-tls
      readOnly: true
    {{- end }}
{{- end -}}

{{- define "tidings.publisher.volumes" -}}
{{- $creds := .credentials | default dict -}}
{{- $method := $creds.method | default "none" -}}
{{- $tls := .tls | default dict -}}
{{- $outbox := .outbox | default dict -}}
- name: tidings-outbox
  {{- toYaml ($outbox.volume | default (dict "emptyDir" (dict "sizeLimit" "512Mi"))) | nindent 2 }}
- name: tidings-publisher-tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if has $method (list "creds" "nkey") }}
- name: tidings-nats-auth
  secret:
    secretName: {{ required "tidings.publisher.volumes: credentials.secretName is required" $creds.secretName }}
    defaultMode: 0440
    items:
      - key: {{ ternary "nats.creds" "nkey.seed" (eq $method "creds") }}
        path: {{ ternary "nats.creds" "nkey.seed" (eq $method "creds") }}
{{- end }}
{{- if $tls.enabled }}
- name: tidings-nats-tls
  secret:
    secretName: {{ required "tidings.publisher.volumes: tls.secretName is required" $tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}
