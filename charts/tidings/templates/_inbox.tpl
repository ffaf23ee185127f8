{{/* The inbox (issue 11): its writer and API Deployments share these pieces. */}}

{{/* The database DSN from the operator's Secret (the chart never creates a database). */}}
{{- define "tidings.inbox.databaseEnv" -}}
{{- $d := .Values.inbox.database -}}
- name: TIDINGS_INBOX_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "inbox.enabled needs inbox.database.existingSecret: a Secret holding the PostgreSQL DSN (the chart creates no database)" $d.existingSecret }}
      key: {{ $d.key }}
{{- end -}}

{{/* Pod-level fields of an inbox pod; takes (list $ "<component>"). */}}
{{- define "tidings.inbox.podSpec" -}}
{{- $root := index . 0 -}}
{{- $i := $root.Values.inbox -}}
{{- $sa := $root.Values.gateway.serviceAccount }}
serviceAccountName: {{ $sa.name | default (ternary (include "tidings.component" (list $root "gateway")) "default" $sa.create) }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with include "tidings.imagePullSecrets" $root | trim }}
{{ . }}
{{- end }}
{{ include "tidings.podSecurityContext" $root }}
{{- with $i.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- include "tidings.topologySpread" (list $root (index $ 1) .) | nindent 2 }}
{{- end }}
{{- with $i.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $i.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Checksums that roll an inbox pod when its config or a chart-made Secret changes. */}}
{{- define "tidings.inbox.checksums" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap-inbox.yaml") . | sha256sum }}
checksum/secret: {{ print (include (print .Template.BasePath "/secret-auth.yaml") .) (include "tidings.nats.secretData" (dict "root" . "component" "inbox")) | sha256sum }}
{{- end -}}
