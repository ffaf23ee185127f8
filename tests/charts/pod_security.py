"""The Pod Security Standards' "restricted" profile (which includes "baseline"), as rules.

What the API server's PodSecurity admission enforces on a namespace labelled
``pod-security.kubernetes.io/enforce: restricted`` (Kubernetes 1.29+, policy version "latest"),
applied to a rendered pod spec: ``violations(pod_spec)`` lists every rule it breaks, each
naming the container and field, the way the admission's refusal would. Rules and allowed values
from https://kubernetes.io/docs/concepts/security/pod-security-standards/.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

# Baseline: capabilities a container may add; restricted narrows it to NET_BIND_SERVICE.
RESTRICTED_ADDABLE = {"NET_BIND_SERVICE"}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
RESTRICTED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
VOLUME_META = {"name"}


def _containers(spec: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(field) or []:
            yield f"{field}[{container.get('name')}]", container


def _seccomp_type(ctx: Mapping[str, Any] | None) -> str | None:
    profile = (ctx or {}).get("seccompProfile")
    return None if profile is None else str(profile.get("type"))


def violations(spec: Mapping[str, Any]) -> list[str]:
    """Every rule of the restricted profile that ``spec`` (a PodSpec) breaks."""
    found: list[str] = []
    pod_ctx: Mapping[str, Any] = spec.get("securityContext") or {}

    # --- baseline ---------------------------------------------------------------------------
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            found.append(f"spec.{field} must be unset or false")
    if (pod_ctx.get("windowsOptions") or {}).get("hostProcess"):
        found.append("spec.securityContext.windowsOptions.hostProcess must not be true")
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"spec.securityContext.sysctls: {sysctl.get('name')} is not a safe sysctl")
    found += _selinux("spec.securityContext", pod_ctx)
    found += _apparmor("spec.securityContext", pod_ctx)
    if _seccomp_type(pod_ctx) not in (None, "RuntimeDefault", "Localhost"):
        found.append("spec.securityContext.seccompProfile.type must be RuntimeDefault or Localhost")

    # --- restricted: volumes ------------------------------------------------------------------
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - VOLUME_META
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume.get('name')}: type {sorted(kinds)} is not allowed")

    for where, container in _containers(spec):
        ctx: Mapping[str, Any] = container.get("securityContext") or {}
        if ctx.get("privileged"):
            found.append(f"{where}.securityContext.privileged must be unset or false")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            found.append(f"{where}.securityContext.windowsOptions.hostProcess must not be true")
        for port in container.get("ports") or []:
            if port.get("hostPort", 0):
                found.append(f"{where}.ports[{port.get('name')}].hostPort must be unset or 0")
        if ctx.get("procMount", "Default") != "Default":
            found.append(f"{where}.securityContext.procMount must be Default")
        found += _selinux(f"{where}.securityContext", ctx)
        found += _apparmor(f"{where}.securityContext", ctx)

        # --- restricted: per container ------------------------------------------------------
        if ctx.get("allowPrivilegeEscalation") is not False:
            found.append(f"{where}.securityContext.allowPrivilegeEscalation must be false")
        non_root = ctx.get("runAsNonRoot", pod_ctx.get("runAsNonRoot"))
        if non_root is not True:
            found.append(f"{where}: runAsNonRoot must be true (container or pod)")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            found.append(f"{where}: runAsUser must not be 0")
        seccomp = _seccomp_type(ctx) or _seccomp_type(pod_ctx)
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{where}: seccompProfile.type must be RuntimeDefault or Localhost")
        capabilities = ctx.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{where}.securityContext.capabilities.drop must include ALL")
        added = set(capabilities.get("add") or []) - RESTRICTED_ADDABLE
        if added:
            found.append(f"{where}.securityContext.capabilities.add: {sorted(added)} not allowed")
    if pod_ctx.get("runAsUser") == 0:
        found.append("spec.securityContext.runAsUser must not be 0")
    return found


def _selinux(where: str, ctx: Mapping[str, Any]) -> list[str]:
    options = ctx.get("seLinuxOptions") or {}
    found = []
    if options.get("type", "") not in SELINUX_TYPES:
        found.append(f"{where}.seLinuxOptions.type {options['type']} is not allowed")
    for field in ("user", "role"):
        if options.get(field):
            found.append(f"{where}.seLinuxOptions.{field} must be unset")
    return found


def _apparmor(where: str, ctx: Mapping[str, Any]) -> list[str]:
    profile = ctx.get("appArmorProfile")
    if profile and profile.get("type") not in ("RuntimeDefault", "Localhost"):
        return [f"{where}.appArmorProfile.type must be RuntimeDefault or Localhost"]
    return []
