{{/* Labels every object carries; the Application selects on app.kubernetes.io/name. */}}
{{- define "kip.labels" -}}
app.kubernetes.io/name: {{ .Release.Name | quote }}
app.kubernetes.io/part-of: kip
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "kip.selector" -}}
app.kubernetes.io/name: {{ .Release.Name | quote }}
app.kubernetes.io/component: {{ .component | quote }}
{{- end -}}

{{/* The virtual node's name: unique per instance so two installs never fight over one node. */}}
{{- define "kip.nodeName" -}}
{{- if .Values.provider.nodeName -}}
{{- .Values.provider.nodeName -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Release.Namespace | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kip.providerServiceAccount" -}}
{{- if .Values.provider.serviceAccount -}}
{{- .Values.provider.serviceAccount -}}
{{- else if .Values.rbac.create -}}
{{- printf "%s-provider" .Release.Name -}}
{{- else -}}
{{- required "provider.serviceAccount is required (the schema's SERVICE_ACCOUNT property, or rbac.create=true)" "" -}}
{{- end -}}
{{- end -}}

{{- define "kip.imageCacheServiceAccount" -}}
{{- if .Values.imageCache.serviceAccount -}}
{{- .Values.imageCache.serviceAccount -}}
{{- else if .Values.rbac.create -}}
{{- printf "%s-image-cache" .Release.Name -}}
{{- else -}}
{{- required "imageCache.serviceAccount is required (the schema's SERVICE_ACCOUNT property, or rbac.create=true)" "" -}}
{{- end -}}
{{- end -}}

{{/* Container hardening shared by every Kip container. */}}
{{- define "kip.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}
