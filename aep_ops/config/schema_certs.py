"""The configuration of TLS certificates (``certificates:``, ``acme:``, ``certs:`` of an environment).

Kept apart from schema.py so each stays small; the names and defaults the code reads are in
``aep_ops.certs.settings``."""

from __future__ import annotations

from aep_ops.certs.keys import KEY_TYPES
from aep_ops.config.schema import DAY, Field, ListOf, Section

VALIDATIONS = ("http-01", "dns-01")

NGINX_TARGET = Section({
    "role": Field(str, "host role whose nginx serves this certificate (every host is checked and deployed)"),
    "port": Field(int, "TLS port nginx listens on (default 443)", minimum=1, maximum=65535),
    "cert_path": Field("remote_path", "full chain file on the hosts (default /etc/nginx/tls/NAME.fullchain.pem);"
                                      " {host} in this and the keys below is the host's name"),
    "key_path": Field("remote_path", "private key file on the hosts (default /etc/nginx/tls/NAME.key.pem)"),
    "webroot": Field("remote_path", "http-01: directory nginx serves /.well-known/acme-challenge/ from"),
    "test_command": ListOf(Field(str), "argv that checks nginx's configuration (default nginx -t)"),
    "reload_command": ListOf(Field(str), "argv that reloads nginx (default nginx -s reload)"),
    "verify_timeout": Field(int, "seconds a host has to serve the new certificate after the reload (default 30)",
                            minimum=1, maximum=3600),
})

ACM_TARGET = Section({
    "certificate_arn": Field(str, "the imported ACM certificate that is re-imported under the same ARN"),
    "listener_arns": ListOf(Field(str), "ALB listeners that serve it (checked after a deploy)"),
    "cloudfront": Field(bool, "served by CloudFront: the certificate lives in us-east-1"),
})

CERTIFICATE = Section({
    "name": Field(str, "lineage name: letters, digits, '.', '-' and '_'", required=True, nullable=False),
    "domains": ListOf(Field(str), "DNS names on the certificate, the first one its subject"),
    "key_type": Field(KEY_TYPES, "default ecdsa-p256"),
    "validation": Field(VALIDATIONS, "http-01 through the nginx webroot, or dns-01 through Route 53"),
    "route53_zone_id": Field(str, "dns-01: the hosted zone of the domains"),
    "renew_before_days": Field(int, "renew this many days before expiry when the CA gives no renewal window"
                                    " (default: at two thirds of the lifetime)", minimum=1, maximum=365),
    "nginx": NGINX_TARGET,
    "acm": ACM_TARGET,
    "endpoints": ListOf(Field(str), "more endpoints that serve it, HOST[:PORT][@SNI] (a load balancer's name)"),
})

ACME = Section({
    "directory": Field(str, "the ACME directory URL"),
    "staging_directory": Field(str, "the directory `certs.renew --dry-run` uses"),
    "account_key": Field("secret", "the ACME account key (file: stored 0600, or aws-sm:)"),
    "contact": Field(str, "e-mail address for the CA's expiry notices"),
    "ca_bundle": Field("path", "CA certificates that verify the directory's TLS (a private or test CA)"),
    "timeout": Field(int, "seconds one issuance may take (default 120)", minimum=10, maximum=3600),
})

CERTS = Section({
    "warn_days": Field(int, "days left below which an endpoint is a warning (default 30)", minimum=0, maximum=3650),
    "critical_days": Field(int, "days left below which an endpoint is critical: exit 5 (default 7)",
                           minimum=0, maximum=3650),
    "parallel": Field(int, "endpoints probed at a time (default 16)", minimum=1, maximum=256),
    "timeout": Field(int, "seconds allowed for one endpoint's handshakes (default 10)", minimum=1, maximum=DAY),
    "ca_file": Field("path", "trust store the chains are verified against (default: the system's)"),
    "metrics_file": Field("path", "Prometheus file (default aep_ops_certs_ENV.prom in metrics.dir)"),
    "random_delay": Field(int, "certs.renew off a terminal waits up to this many seconds before renewing"
                               " (spreads the CA's load; default 300)", minimum=0, maximum=DAY),
})

ENVIRONMENT_FIELDS = {
    "certificates": ListOf(CERTIFICATE, "TLS certificates this environment serves"),
    "acme": ACME,
    "certs": CERTS,
}
