"""The chart's values as typed models: the source of ``values.schema.json`` and the README table.

Dagster's way: the schema Helm enforces is generated from these models, and a test fails when
the committed file is stale, so the schema, ``values.yaml`` (whose defaults must equal the
models' defaults) and the README cannot drift apart. Regenerate both files with::

    python -m tests.charts.values_model

Kubernetes objects passed through verbatim (resources, affinity, volume sources, ...) are typed
as plain objects: the API server and ``kubernetes-validate`` check their insides.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

CHART = Path(__file__).resolve().parents[2] / "charts" / "tidings"
SCHEMA_PATH = CHART / "values.schema.json"
README_PATH = CHART / "README.md"
BEGIN, END = "<!-- BEGIN VALUES -->", "<!-- END VALUES -->"

# Same grammar as tidings.units.parse_duration / parse_size (a number means seconds / bytes).
Duration = (
    Annotated[float, Field(ge=0)]
    | Annotated[str, StringConstraints(pattern=r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$")]
)
Size = (
    Annotated[int, Field(ge=0)]
    | Annotated[str, StringConstraints(pattern=r"^[0-9]+([KMGT]i?B|B)?$")]
)
Obj = dict[str, Any]
EventType = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}\.[a-z][a-z0-9_]{0,31}$")
]
EnvName = Annotated[str, StringConstraints(pattern=r"^TIDINGS_[A-Z0-9_]+$")]


class Strict(BaseModel):
    """Unknown keys are errors (`additionalProperties: false`): a typo is refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Image(Strict):
    repository: str = Field(min_length=1, description="Image repository.")
    tag: str = Field(default="", description="Tag; empty: the chart's appVersion.")
    digest: Annotated[str, StringConstraints(pattern=r"^(sha256:[0-9a-f]{64})?$")] = Field(
        default="", description="`sha256:...`; when set the image is pulled by digest."
    )
    pullPolicy: Literal["", "Always", "IfNotPresent", "Never"] = Field(
        default="", description="Empty: Always for a tag, IfNotPresent for a digest."
    )


class Images(Strict):
    gateway: Image = Image(repository="ghcr.io/tidings/gateway")
    publisher: Image = Image(repository="ghcr.io/tidings/publisher")
    cli: Image = Image(repository="ghcr.io/tidings/cli")


class NatsTls(Strict):
    enabled: bool = Field(default=False, description="Verify the servers with a CA (tls:// URLs).")
    secretName: str = Field(
        default="", description="Secret with `ca.crt` (and `tls.crt`, `tls.key` for clientCert)."
    )
    clientCert: bool = Field(default=False, description="Present a client certificate (mTLS).")
    hostname: str = Field(default="", description="Server name to verify, if not the URL's host.")


class NatsCredentials(Strict):
    method: Literal["none", "password", "token", "creds", "nkey"] = Field(
        default="none", description="How this component authenticates to NATS."
    )
    user: str = Field(default="", description="User name (method password).")
    password: str = Field(default="", description="Password (method password).")
    token: str = Field(default="", description="Token (method token).")
    creds: str = Field(default="", description="Contents of a `.creds` file (method creds).")
    nkeySeed: str = Field(default="", description="NKey seed `SU...` (method nkey).")
    existingSecret: str = Field(
        default="",
        description="Your Secret with `password`, `token`, `nats.creds` or `nkey.seed` instead.",
    )


class Credentials(Strict):
    gateway: NatsCredentials = NatsCredentials(user="tidings-gateway")
    init: NatsCredentials = NatsCredentials(user="tidings-admin")
    publisher: NatsCredentials = NatsCredentials(user="tidings-publisher")
    inbox: NatsCredentials = NatsCredentials(user="tidings-inbox")


class Nats(Strict):
    urls: list[Annotated[str, StringConstraints(pattern=r"^(nats|tls)://[^\s/]+(:[0-9]+)?/?$")]] = (
        Field(default=["nats://nats:4222"], min_length=1, description="NATS server URLs.")
    )
    tls: NatsTls = NatsTls()
    credentials: Credentials = Credentials()


class Stream(Strict):
    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = Field(
        default="TIDINGS",
        description="Stream name (the NATS permissions name it too).",
    )
    replicas: int = Field(default=3, ge=1, le=5, description="Copies kept by JetStream.")
    storage: Literal["file", "memory"] = Field(default="file", description="file or memory.")
    maxAge: Duration = Field(default="7d", description="Keep notifications this long.")
    maxBytes: Size = Field(default="1GiB", description="Keep at most this many bytes.")
    maxMsgSize: Size = Field(default="1MiB", description="Largest stored notification.")
    duplicateWindow: Duration = Field(default="2m", description="Idempotency window of ids.")


class Events(Strict):
    extra: list[EventType] = Field(default=[], description="Extra `<domain>.<action>` types.")
    allowUnknown: bool = Field(default=False, description="Accept any well-formed event type.")


class Claims(Strict):
    user: str = Field(default="sub", min_length=1, description="Claim holding the user id.")
    tenant: str = Field(default="tenant", min_length=1, description="Claim holding the tenant id.")
    roles: str = Field(default="roles", min_length=1, description="Claim holding the roles array.")
    rooms: str = Field(
        default="rooms", min_length=1, description="Claim holding the allowed room patterns."
    )


class Auth(Strict):
    method: Literal["secret", "publicKey", "jwks"] = Field(
        default="secret", description="How gateways verify JWTs: HS256 secret, PEM key, or JWKS."
    )
    jwtSecret: str = Field(
        default="", description="HS256 secret (>= 32 bytes); empty: generated and kept."
    )
    publicKey: str = Field(default="", description="PEM public key or certificate.")
    jwksUrl: Annotated[str, StringConstraints(pattern=r"^(https?://\S+)?$")] = Field(
        default="", description="JWKS URL of the identity provider."
    )
    existingSecret: str = Field(
        default="", description="Your Secret with `jwt-secret` or `public-key.pem`."
    )
    algorithms: list[str] = Field(default=[], description="Allowed `alg` values.")
    audience: str = Field(default="", description="Required `aud`, when set.")
    issuer: str = Field(default="", description="Required `iss`, when set.")
    leeway: float = Field(default=0, ge=0, description="Clock skew allowed, seconds.")
    claims: Claims = Claims()


class Log(Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="Minimum log level.",
    )
    format: Literal["json", "console"] = Field(
        default="json",
        description="json (log shippers) or console.",
    )


class Telemetry(Strict):
    exporter: Literal["none", "otlp", "console"] = Field(
        default="none",
        description="Where spans go.",
    )
    otlpEndpoint: str = Field(default="", description="OTLP/HTTP traces endpoint.")
    sampleRatio: float = Field(default=1.0, ge=0, le=1, description="Share of new traces recorded.")


def _resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Obj:
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": cpu_limit, "memory": memory_limit},
    }


class Resources(Strict):
    """Requests and limits are both required: every container is sized."""

    requests: Obj
    limits: Obj


class Service(Strict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP",
        description="Service type of the gateways.",
    )
    port: int = Field(
        default=80,
        ge=1,
        le=65535,
        description="Service port of the data port: WebSocket and probes (gateway 8080).",
    )
    apiPort: int = Field(
        default=8083,
        ge=1,
        le=65535,
        description="Service port of the status API (gateway 8083).",
    )
    metricsPort: int = Field(
        default=9464,
        ge=1,
        le=65535,
        description="Port of the internal `-gateway-metrics` Service (gateway 9464, `/metrics`).",
    )
    annotations: dict[str, str] = Field(default={}, description="Service annotations.")


class IngressPath(Strict):
    path: str = "/"
    pathType: Literal["Prefix", "Exact", "ImplementationSpecific"] = "Prefix"
    port: Literal["http", "api"] = Field(
        default="http", description="`http`: WebSocket and probes; `api`: the status API."
    )


class IngressHost(Strict):
    host: str
    paths: list[IngressPath] = Field(min_length=1)


class Ingress(Strict):
    enabled: bool = Field(default=False, description="Expose the gateways through an Ingress.")
    className: str = Field(default="nginx", description="IngressClass.")
    nginxWebSocket: bool = Field(
        default=True, description="ingress-nginx annotations for WebSockets."
    )
    annotations: dict[str, str] = Field(default={}, description="More Ingress annotations.")
    hosts: list[IngressHost] = Field(
        default=[
            IngressHost(
                host="tidings.example.com",
                paths=[IngressPath(), IngressPath(path="/api/notifications", port="api")],
            )
        ],
        description="Hosts and paths routed to the gateways.",
    )
    tls: list[Obj] = Field(default=[], description="TLS blocks (`[{secretName, hosts}]`).")


class ConnectionsMetric(Strict):
    enabled: bool = Field(default=False, description="Also scale on connections per pod.")
    metricName: str = Field(
        default="tidings_gateway_connections",
        description="Pods metric served by your metrics adapter.",
    )
    averageValue: str = Field(default="5000", description="Target connections per pod.")


class Autoscaling(Strict):
    enabled: bool = Field(
        default=False,
        description="HorizontalPodAutoscaler instead of fixed replicas.",
    )
    minReplicas: int = Field(default=2, ge=1, description="Fewest gateways.")
    maxReplicas: int = Field(default=10, ge=1, description="Most gateways.")
    targetCPUUtilizationPercentage: int = Field(
        default=70, ge=1, le=100, description="Average CPU target."
    )
    connections: ConnectionsMetric = ConnectionsMetric()
    behavior: Obj = Field(
        default={
            "scaleDown": {
                "stabilizationWindowSeconds": 300,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
            }
        },
        description="HPA behavior; scale down slowly (each removal drains clients).",
    )


class PodDisruptionBudget(Strict):
    enabled: bool = Field(default=True, description="A PodDisruptionBudget for the gateways.")
    maxUnavailable: int | str = Field(
        default=1,
        description="Gateways a voluntary disruption may take at once.",
    )


class NetworkPolicy(Strict):
    enabled: bool = Field(default=False, description="NetworkPolicies for every pod.")
    gatewayIngressFrom: list[Obj] = Field(
        default=[], description="Who may reach the gateways (peers); empty: anyone."
    )
    natsPeers: list[Obj] = Field(default=[], description="Where NATS runs; empty: this namespace.")
    natsPort: int = Field(default=4222, ge=1, le=65535, description="NATS client port.")
    gatewayExtraEgress: list[Obj] = Field(
        default=[], description="Extra egress rules of the gateways (JWKS, OTLP)."
    )
    metricsFrom: list[Obj] = Field(
        default=[], description="Who may scrape the gateways' metrics port (peers); empty: anyone."
    )


class ServiceMonitor(Strict):
    enabled: bool = Field(
        default=False,
        description="A prometheus-operator ServiceMonitor for /metrics.",
    )
    interval: str = Field(default="30s", description="Scrape interval.")
    scrapeTimeout: str = Field(default="", description="Scrape timeout; empty: Prometheus'.")
    labels: dict[str, str] = Field(
        default={},
        description="Labels your Prometheus' serviceMonitorSelector matches (e.g. release).",
    )
    namespace: str = Field(
        default="",
        description="Namespace of the ServiceMonitor (e.g. monitoring); empty: the release's.",
    )
    relabelings: list[Obj] = Field(default=[], description="Relabelings of the targets.")
    metricRelabelings: list[Obj] = Field(default=[], description="Relabelings of the samples.")


class PrometheusRule(Strict):
    enabled: bool = Field(
        default=False, description="A prometheus-operator PrometheusRule with Tidings' alerts."
    )
    namespace: str = Field(default="", description="Its namespace; empty: the release's.")
    labels: dict[str, str] = Field(
        default={}, description="Labels your Prometheus' ruleSelector matches."
    )
    natsDisconnectedFor: str = Field(
        default="2m", description="How long a gateway may lack NATS before it alerts."
    )
    slowConsumerClosesPerSecond: float = Field(
        default=0.1, ge=0, description="Slow-consumer closes per second (per pod) that alert."
    )
    deliveryLagSeconds: float = Field(
        default=1.0, gt=0, description="p99 stream-to-client latency that alerts."
    )
    inboxPendingMessages: int = Field(
        default=10000, ge=0, description="Inbox writer lag (pending notifications) that alerts."
    )
    extraRules: list[Obj] = Field(default=[], description="More rules for the same group.")


class HttpRoute(Strict):
    enabled: bool = Field(
        default=False, description="A Gateway API HTTPRoute (beside or instead of the Ingress)."
    )
    parentRefs: list[Obj] = Field(
        default=[], description="The Gateway(s) to attach to (`[{name, namespace, sectionName}]`)."
    )
    hostnames: list[str] = Field(default=[], description="Hostnames it serves.")
    annotations: dict[str, str] = Field(default={}, description="HTTPRoute annotations.")
    timeouts: Obj = Field(
        default={}, description="Timeouts of the WebSocket rule (`{request: 0s}` if yours cuts)."
    )


class ServiceAccount(Strict):
    create: bool = Field(
        default=True,
        description="Create the gateways' ServiceAccount (no token mounted).",
    )
    name: str = Field(default="", description="Its name; default: the full name.")
    annotations: dict[str, str] = Field(default={}, description="ServiceAccount annotations.")


def spread(key: str) -> Obj:
    """One topologySpreadConstraint: new pods of a rollout are spread among themselves
    (``matchLabelKeys``), not counted against the old ReplicaSet's pods."""
    return {
        "maxSkew": 1,
        "topologyKey": key,
        "whenUnsatisfiable": "ScheduleAnyway",
        "matchLabelKeys": ["pod-template-hash"],
    }


class AdminToken(Strict):
    existingSecret: str = Field(
        default="",
        description="Your Secret holding the admin API's operator key (>= 32 characters).",
    )
    key: str = Field(
        default="admin-token", min_length=1, description="The key of that Secret to read."
    )
    generate: bool = Field(
        default=False,
        description="Generate the key into a Secret the chart keeps across upgrades (lookup).",
    )


class Gateway(Strict):
    replicas: int = Field(default=2, ge=1, description="Pods when the autoscaler is off.")
    allowedOrigins: list[str] = Field(default=[], description="Origins allowed to open /ws.")
    tenantQuota: int = Field(default=0, ge=0, description="Connections per tenant per gateway.")
    userConnections: int = Field(
        default=0, ge=0, description="Connections per user summed over every gateway; 0: off."
    )
    adminToken: AdminToken = Field(
        default=AdminToken(),
        description="TIDINGS_GATEWAY_ADMIN_TOKEN (admin API: revoke, presence); none: off.",
    )
    drainSeconds: float = Field(default=20, ge=0, le=600, description="Drain period on SIGTERM.")
    preStopSeconds: int = Field(default=5, ge=0, le=60, description="Pause before SIGTERM.")
    terminationGracePeriodSeconds: int | None = Field(
        default=None, ge=1, description="null: preStop + drain + 10."
    )
    extraConfig: dict[EnvName, str | int | float | bool] = Field(
        default={},
        description="More `TIDINGS_*` settings (docs/configuration.md).",
        json_schema_extra={"additionalProperties": False},  # only TIDINGS_* names
    )
    resources: Resources = Resources(**_resources("250m", "256Mi", "1", "512Mi"))
    service: Service = Service()
    ingress: Ingress = Ingress()
    autoscaling: Autoscaling = Autoscaling()
    podDisruptionBudget: PodDisruptionBudget = PodDisruptionBudget()
    serviceMonitor: ServiceMonitor = ServiceMonitor()
    serviceAccount: ServiceAccount = ServiceAccount()
    topologySpreadConstraints: list[Obj] = Field(
        default=[spread("kubernetes.io/hostname"), spread("topology.kubernetes.io/zone")],
        description="Pod topologySpreadConstraints; each gets the gateways' labelSelector.",
    )
    prometheusRule: PrometheusRule = PrometheusRule()
    httpRoute: HttpRoute = HttpRoute()
    extraEnv: list[Obj] = Field(default=[], description="More env entries (EnvVar list, tpl).")
    envFrom: list[Obj] = Field(default=[], description="More envFrom sources (tpl).")
    extraVolumes: list[Obj] = Field(default=[], description="More pod volumes (tpl).")
    extraVolumeMounts: list[Obj] = Field(default=[], description="More mounts of the gateway.")
    extraContainers: list[Obj] = Field(default=[], description="More containers in the pod.")
    initContainers: list[Obj] = Field(default=[], description="Init containers of the pod.")
    podAnnotations: dict[str, str] = Field(default={}, description="Extra pod annotations.")
    podLabels: dict[str, str] = Field(default={}, description="Extra pod labels.")
    nodeSelector: dict[str, str] = Field(default={}, description="Node selector.")
    tolerations: list[Obj] = Field(default=[], description="Tolerations.")
    affinity: Obj = Field(default={}, description="Affinity.")
    priorityClassName: str = Field(default="", description="PriorityClass of the gateways.")


class NatsInit(Strict):
    enabled: bool = Field(default=True, description="Run `tidings nats init` as a hook.")
    backoffLimit: int = Field(default=3, ge=0, description="Retries of the hook Job.")
    activeDeadlineSeconds: int = Field(
        default=300, ge=10, description="Longest the hook Job may run."
    )
    resources: Resources = Resources(**_resources("50m", "96Mi", "500m", "192Mi"))


class Outbox(Strict):
    maxMessages: int = Field(
        default=100000, ge=1, description="Outbox bound in messages (then 503)."
    )
    maxBytes: Size = Field(default="256MiB", description="Outbox bound in bytes.")
    volume: Obj = Field(
        default={"emptyDir": {"sizeLimit": "512Mi"}}, description="Outbox volume source."
    )


class Quotas(Strict):
    enabled: bool = Field(
        default=False,
        description="Enforce per-tenant publish quotas in the sidecar (limits per tenant:"
        " `tidings quota set`; the NATS user may use the quotas bucket).",
    )
    rate: float = Field(
        default=0, ge=0, description="Default publishes/s per tenant and sidecar (0: unlimited)."
    )
    burst: int = Field(default=0, ge=0, description="Default burst (0: one second of rate).")
    daily: int = Field(
        default=0, ge=0, description="Default notifications per tenant per UTC day (0: unlimited)."
    )


class Publisher(Strict):
    port: int = Field(default=8081, ge=1, le=65535, description="Loopback port of the sidecar.")
    native: bool = Field(default=True, description="Run as a native sidecar (init container).")
    allowBroadcast: bool = Field(
        default=False,
        description="Allow broadcast audiences (needs the broadcast NATS user).",
    )
    insecureNats: bool = Field(
        default=False,
        description="Development only: render the sidecar although it connects to NATS"
        " without a credential or client certificate (refused otherwise).",
    )
    outbox: Outbox = Outbox()
    quotas: Quotas = Quotas()
    resources: Resources = Resources(**_resources("50m", "96Mi", "500m", "256Mi"))


class ExampleProducer(Strict):
    enabled: bool = Field(
        default=False,
        description="Deploy the example producer with its sidecar.",
    )
    replicas: int = Field(default=1, ge=0, description="Example producer pods.")
    tenant: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = Field(
        default="demo",
        description="Tenant it publishes to.",
    )
    interval: float = Field(default=10, gt=0, description="Seconds between notifications.")
    resources: Resources = Resources(**_resources("10m", "48Mi", "100m", "96Mi"))


class InboxDatabase(Strict):
    existingSecret: str = Field(
        default="", description="Your Secret with the PostgreSQL DSN (required with the inbox)."
    )
    key: str = Field(
        default="database-url",
        min_length=1,
        description="Its key (`postgresql://user:pw@host/db`).",
    )
    port: int = Field(default=5432, ge=1, le=65535, description="Database port (NetworkPolicy).")
    peers: list[Obj] = Field(
        default=[], description="Where the database is (NetworkPolicy peers); empty: anywhere."
    )


class InboxPart(Strict):
    replicas: int = Field(default=2, ge=0, description="Pods.")
    resources: Resources = Resources(**_resources("100m", "128Mi", "1", "384Mi"))


class InboxApiService(Strict):
    port: int = Field(default=8085, ge=1, le=65535, description="Service port of the API (8085).")


class InboxApi(InboxPart):
    service: InboxApiService = InboxApiService()


class InboxMigrate(Strict):
    enabled: bool = Field(
        default=True, description="Run `tidings inbox migrate` as a pre-install/upgrade hook."
    )
    backoffLimit: int = Field(default=3, ge=0, description="Retries of the hook Job.")
    activeDeadlineSeconds: int = Field(default=600, ge=10, description="Longest it may run.")
    resources: Resources = Resources(**_resources("50m", "96Mi", "500m", "256Mi"))


class InboxPdb(Strict):
    enabled: bool = Field(default=True, description="PodDisruptionBudgets for writer and API.")
    maxUnavailable: int | str = Field(default=1, description="Pods a disruption may take at once.")


class Inbox(Strict):
    enabled: bool = Field(
        default=False, description="The inbox writer and REST API (PostgreSQL you provide)."
    )
    database: InboxDatabase = InboxDatabase()
    writer: InboxPart = InboxPart()
    api: InboxApi = InboxApi()
    migrate: InboxMigrate = InboxMigrate()
    podDisruptionBudget: InboxPdb = InboxPdb()
    topologySpreadConstraints: list[Obj] = Field(
        default=[spread("kubernetes.io/hostname")],
        description="Pod topologySpreadConstraints of writer and API pods.",
    )
    nodeSelector: dict[str, str] = Field(default={}, description="Node selector.")
    tolerations: list[Obj] = Field(default=[], description="Tolerations.")
    extraConfig: dict[EnvName, str | int | float | bool] = Field(
        default={},
        description="More `TIDINGS_*` settings of both (e.g. TIDINGS_INBOX_BATCH_SIZE).",
        json_schema_extra={"additionalProperties": False},
    )


class Tests(Strict):
    enabled: bool = Field(
        default=True,
        description="A `helm test` pod that checks the gateways' probes.",
    )


class Values(Strict):
    """Every value of the tidings chart."""

    nameOverride: str = Field(default="", description="Replaces the chart name in resource names.")
    fullnameOverride: str = Field(
        default="",
        description="Replaces the whole `<release>-<chart>` prefix.",
    )
    commonLabels: dict[str, str] = Field(default={}, description="Labels added to every resource.")
    templatesOnly: bool = Field(
        default=False, description="Render nothing; only provide the sidecar templates."
    )
    images: Images = Images()
    imagePullSecrets: list[Obj] = Field(
        default=[],
        description="Secrets for pulling the images (`[{name: regcred}]`).",
    )
    nats: Nats = Nats()
    stream: Stream = Stream()
    events: Events = Events()
    auth: Auth = Auth()
    log: Log = Log()
    telemetry: Telemetry = Telemetry()
    gateway: Gateway = Gateway()
    networkPolicy: NetworkPolicy = NetworkPolicy()
    natsInit: NatsInit = NatsInit()
    publisher: Publisher = Publisher()
    exampleProducer: ExampleProducer = ExampleProducer()
    inbox: Inbox = Inbox()
    podSecurityContext: Obj = Field(
        default={
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        description="Pod securityContext of every pod (restricted profile).",
    )
    securityContext: Obj = Field(
        default={
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        description="Container securityContext of every container.",
    )
    tests: Tests = Tests()
    extraObjects: list[Obj | str] = Field(
        default=[], description="More manifests rendered with the release (objects or tpl strings)."
    )


def schema() -> dict[str, Any]:
    """The JSON schema Helm validates values against, declared draft-07: the keywords used are
    common to draft-07 (Helm 3's validator) and 2020-12 (Helm 4's, which honours ``$schema``),
    and editors find the schema by it."""
    body = {"$schema": "http://json-schema.org/draft-07/schema#", **Values.model_json_schema()}
    # Helm passes `global` to a chart used as a subchart (the sidecar's way into other charts).
    body["properties"]["global"] = {
        "type": "object",
        "description": "Helm's global values when this chart is a dependency; not read.",
    }
    return body


def schema_text() -> str:
    return json.dumps(schema(), indent=2, sort_keys=True) + "\n"


def _type_of(node: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short type for the table, read off the JSON schema node."""
    node = defs[node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node
    if "enum" in node:
        return " \\| ".join(json.dumps(v) for v in node["enum"])
    if "const" in node:
        return json.dumps(node["const"])
    if "anyOf" in node:
        return " \\| ".join(dict.fromkeys(_type_of(n, defs) for n in node["anyOf"]))
    kind = node.get("type", "any")
    if kind == "array":
        return f"list[{_type_of(node.get('items', {}), defs)}]"
    if kind == "object" and "properties" not in node:
        return "object"
    return {"integer": "int", "number": "number", "boolean": "bool", "string": "string"}.get(
        kind, str(kind)
    )


def _rows(node: dict[str, Any], defs: dict[str, Any], prefix: str = "") -> list[str]:
    """One row per leaf value; nested sections are flattened to dotted keys."""
    rows: list[str] = []
    for name, prop in node["properties"].items():
        key = f"{prefix}{name}"
        target = defs[prop["$ref"].rsplit("/", 1)[1]] if "$ref" in prop else prop
        if "properties" in target and target.get("title") != "Resources":
            rows += _rows(target, defs, f"{key}.")
            continue
        shown = json.dumps(prop.get("default"), separators=(",", ":")).replace("|", "\\|")
        about = prop.get("description") or target.get("description") or ""
        rows.append(f"| `{key}` | {_type_of(prop, defs)} | `{shown}` | {about} |")
    return rows


def values_table() -> str:
    """The README's values table, one row per leaf value."""
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    body = schema()
    return "\n".join(lines + _rows(body, body["$defs"])) + "\n"


def readme_with_table(readme: str) -> str:
    head, _, rest = readme.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{values_table()}{END}{tail}"


def main() -> None:
    SCHEMA_PATH.write_text(schema_text())
    README_PATH.write_text(readme_with_table(README_PATH.read_text()))
    print(f"wrote {SCHEMA_PATH} and the values table of {README_PATH}", file=sys.stderr)


if __name__ == "__main__":
    main()
