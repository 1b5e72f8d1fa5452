"""cert-manager and Rancher, installed with Helm (v3 Release: it runs chart hooks,
which Rancher's pre-upgrade and post-delete steps need)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from rendering import rancher_values as values_lib
from rendering.ha_values import HelmValues

from .naming import child


@dataclass
class RancherArgs:
    provider: k8s.Provider
    gate: pulumi.Resource
    rancher_version: str
    rancher_repository: str
    cert_manager_version: str
    values_spec: values_lib.RancherValuesSpec
    install_cert_manager: bool
    cert_manager_values: HelmValues
    # tls-rancher-ingress (ingress.tls.source=secret) and tls-ca (privateCA).
    ingress_certificate_pem: Optional[pulumi.Input[str]] = None
    ingress_private_key_pem: Optional[pulumi.Input[str]] = None
    private_ca_pem: Optional[pulumi.Input[str]] = None
    # L7: (HelmChartConfig name, values) for the packaged ingress controller.
    forwarded_headers: Optional[tuple[str, pulumi.Input[HelmValues]]] = None
    # What the Rancher release (alone) waits for besides the gate: the Rancher name's
    # record, which Rancher's agents and Let's Encrypt look up (a lookup before it exists
    # is cached as "no such name"). cert-manager does not wait for it.
    rancher_after: Sequence[pulumi.Resource] = ()
    # What the TLS secrets above wait for: a rancher-backup restore, which writes the old
    # stack's cattle-system secrets (these names included) over any that exist already.
    secrets_after: Sequence[pulumi.Resource] = ()

    def __post_init__(self) -> None:
        self.ingress_tls_pair()

    def ingress_tls_pair(self) -> Optional[tuple[pulumi.Input[str], pulumi.Input[str]]]:
        """The ingress certificate and key, both or neither."""
        if self.ingress_certificate_pem is None and self.ingress_private_key_pem is None:
            return None
        if self.ingress_certificate_pem is None or self.ingress_private_key_pem is None:
            raise ValueError("Rancher needs ingress_certificate_pem and ingress_private_key_pem together")
        return self.ingress_certificate_pem, self.ingress_private_key_pem


class Rancher(pulumi.ComponentResource):
    bootstrap_password: pulumi.Output[str]  # secret
    values: dict[str, Any]  # plain: only the password inside is an Output (secret)

    def __init__(self, name: str, args: RancherArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("rancher-ha:rancher:Rancher", name, None, opts)

        def in_cluster(*extra: pulumi.Resource) -> pulumi.ResourceOptions:
            # Every Kubernetes resource waits for the API gate (which depends on the whole
            # API path, so a delete of one of these always runs while the API is still
            # reachable), and is skipped by a destroy that takes the cluster with it
            # (deleted_with the cluster's provider): `helm uninstall` of a cluster being
            # deleted could only fail.
            return child(
                self, provider=args.provider, depends_on=[args.gate, *extra], deleted_with=args.provider
            )

        password = random.RandomPassword(f"{name}-bootstrap-password", length=24, special=False, opts=child(self))
        self.bootstrap_password = pulumi.Output.secret(password.result)

        rancher_dependencies: list[pulumi.Resource] = []
        if args.install_cert_manager:
            cert_manager = pinned_release(
                "cert-manager",
                args.cert_manager_version,
                values_lib.CERT_MANAGER_REPOSITORY,
                values_lib.CERT_MANAGER_NAMESPACE,
                args.cert_manager_values,
                timeout=900,
                # A failed install or upgrade returns to the previous release: cert-manager's
                # API (cert-manager.io/v1) is the same on both sides, and a failed first
                # install leaves no half-installed release behind.
                atomic=True,
                opts=in_cluster(),
                create_namespace=True,
            )
            rancher_dependencies.append(cert_manager)

        if args.forwarded_headers is not None:
            chart_name, chart_values = args.forwarded_headers
            rancher_dependencies.append(
                k8s.apiextensions.CustomResource(
                    f"{name}-trust-forwarded-headers",
                    api_version="helm.cattle.io/v1",
                    kind="HelmChartConfig",
                    metadata=k8s.meta.v1.ObjectMetaArgs(name=chart_name, namespace="kube-system"),
                    spec={"valuesContent": pulumi.Output.from_input(chart_values).apply(_yaml)},
                    opts=in_cluster(),
                )
            )

        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=values_lib.RANCHER_NAMESPACE),
            opts=in_cluster(),
        )
        def rancher_secret(resource_name: str, secret_name: str, secret_type: str,
                           data: dict[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
            return k8s.core.v1.Secret(
                resource_name,
                metadata=k8s.meta.v1.ObjectMetaArgs(name=secret_name, namespace=namespace.metadata.name),
                type=secret_type,
                string_data=data,
                opts=in_cluster(*args.secrets_after),
            )

        ingress_tls = args.ingress_tls_pair()
        if ingress_tls is not None:
            # ingress.tls.source=secret: Rancher's ingress serves this pair.
            certificate, private_key = ingress_tls
            rancher_dependencies.append(
                rancher_secret(
                    f"{name}-ingress-tls",
                    values_lib.INGRESS_SECRET_NAME,
                    "kubernetes.io/tls",
                    {"tls.crt": certificate, "tls.key": pulumi.Output.secret(private_key)},
                )
            )
        if args.private_ca_pem is not None:
            # privateCA=true: agents are told this CA (agentTLSMode strict).
            rancher_dependencies.append(
                rancher_secret(
                    f"{name}-private-ca",
                    values_lib.PRIVATE_CA_SECRET_NAME,
                    "Opaque",
                    {values_lib.PRIVATE_CA_SECRET_KEY: args.private_ca_pem},
                )
            )

        # Only the password is secret: the rest of the values stays readable in every
        # preview and plan diff.
        self.values = values_lib.rancher_values(args.values_spec, self.bootstrap_password)
        release = pinned_release(
            "rancher",
            args.rancher_version,
            args.rancher_repository,
            namespace.metadata.name,
            self.values,
            timeout=1200,
            # Never rolled back by Helm: Rancher does not support `helm rollback` across its
            # versions (a newer Rancher migrates its CRDs and stored objects); its way back is
            # a rancher-backup restore (README, Day 2). A failed upgrade stays failed and the
            # next `pulumi up` retries it.
            atomic=False,
            opts=in_cluster(namespace, *rancher_dependencies, *args.rancher_after),
        )
        self.release_status = release.status
        self.register_outputs({"release": release.name})


def pinned_release(
    chart: str,
    version: str,
    repository: str,
    namespace: pulumi.Input[str],
    values: pulumi.Input[HelmValues],
    timeout: int,
    atomic: bool,
    opts: pulumi.ResourceOptions,
    create_namespace: bool = False,
) -> k8s.helm.v3.Release:
    """A Helm release named after its chart, at a pinned version; rolled back by Helm if it
    fails only when `atomic` (the caller decides: not every chart supports a rollback)."""
    return k8s.helm.v3.Release(
        chart,
        name=chart,  # fixed release names: Rancher requires "rancher"
        chart=chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=repository),
        namespace=namespace,
        create_namespace=create_namespace,
        values=values,
        atomic=atomic,
        wait_for_jobs=True,
        timeout=timeout,
        opts=opts,
    )


def _yaml(values: HelmValues) -> str:
    import yaml

    return yaml.safe_dump(values, default_flow_style=False, sort_keys=True)
