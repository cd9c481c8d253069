"""TLS certificates: check every endpoint (``certs.check``), renew through ACME (``certs.renew``),
deploy to nginx over SSH and to ACM (``certs.deploy``)."""
