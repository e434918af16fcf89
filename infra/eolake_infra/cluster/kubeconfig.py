"""The cluster's certificate authorities and its administrator's kubeconfig, made by Pulumi rather than read back
from a server: RKE2 adopts the CAs it finds in server/tls on its first start (and makes the ones it does not find),
so the platform layer can talk to the new cluster without SSH, and the kubeconfig stays a Pulumi secret."""

from __future__ import annotations

import base64

import pulumi
import pulumi_tls as tls
import yaml

CA_YEARS, CLIENT_YEARS = 10, 1
HOURS_PER_YEAR = 24 * 365
ADMIN = {"common_name": "eolake-admin", "organization": "system:masters"}
CA_FILES = ("server-ca.crt", "server-ca.key", "client-ca.crt", "client-ca.key")  # in RKE2's server/tls


class Certificates:
    """The server CA (signs the API server's certificate), the client CA (signs kubelets' and users' certificates)
    and an administrator certificate from the client CA. Keys are ECDSA P-256."""

    def __init__(self, parent: pulumi.Resource):
        opts = pulumi.ResourceOptions(parent=parent)
        self.server_ca_key, self.server_ca = self._authority("server-ca", opts)
        self.client_ca_key, self.client_ca = self._authority("client-ca", opts)
        self.admin_key = _key("admin", opts)
        request = tls.CertRequest("admin-csr", private_key_pem=self.admin_key.private_key_pem, subject=ADMIN, opts=opts)
        self.admin = tls.LocallySignedCert(
            "admin-certificate",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=self.client_ca_key.private_key_pem,
            ca_cert_pem=self.client_ca.cert_pem,
            validity_period_hours=CLIENT_YEARS * HOURS_PER_YEAR,
            early_renewal_hours=30 * 24,
            allowed_uses=["digital_signature", "key_encipherment", "client_auth"],
            opts=opts,
        )

    @staticmethod
    def _authority(name: str, opts: pulumi.ResourceOptions):
        key = _key(name, opts)
        certificate = tls.SelfSignedCert(
            name,
            private_key_pem=key.private_key_pem,
            is_ca_certificate=True,
            subject={"common_name": f"eolake-rke2-{name}"},
            validity_period_hours=CA_YEARS * HOURS_PER_YEAR,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature", "key_encipherment"],
            opts=opts,
        )
        return key, certificate

    def ca_files(self) -> pulumi.Output[dict[str, str]]:
        """What the first server finds in /var/lib/rancher/rke2/server/tls before RKE2 starts."""
        return pulumi.Output.secret(
            pulumi.Output.all(
                self.server_ca.cert_pem,
                self.server_ca_key.private_key_pem,
                self.client_ca.cert_pem,
                self.client_ca_key.private_key_pem,
            ).apply(lambda v: dict(zip(CA_FILES, v)))
        )


def _key(name: str, opts: pulumi.ResourceOptions) -> tls.PrivateKey:
    return tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=opts)


def render(api_url: pulumi.Input[str], certificates: Certificates) -> pulumi.Output[str]:
    return pulumi.Output.all(
        api_url, certificates.server_ca.cert_pem, certificates.admin.cert_pem, certificates.admin_key.private_key_pem
    ).apply(lambda v: document(*v))


def document(api_url: str, ca_pem: str, cert_pem: str, key_pem: str) -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "eolake",
            "clusters": [{"name": "eolake", "cluster": {"server": api_url, "certificate-authority-data": b64(ca_pem)}}],
            "users": [
                {
                    "name": "eolake-admin",
                    "user": {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)},
                }
            ],
            "contexts": [{"name": "eolake", "context": {"cluster": "eolake", "user": "eolake-admin"}}],
        },
        sort_keys=False,
    )
