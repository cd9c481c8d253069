"""pytest plugin: fixtures that start real services (PostgreSQL, sshd, moto, pebble).

Loaded automatically where aep-ops is installed (entry point ``pytest11``). Each
fixture module keeps heavy imports inside functions so that loading the plugin is cheap.
"""

from aep_ops.testing.moto import moto_account, moto_server  # noqa: F401
from aep_ops.testing.postgres import pg_cluster, pg_cluster_factory  # noqa: F401
from aep_ops.testing.s3tls import s3_tls_proxy  # noqa: F401
from aep_ops.testing.sshd import ssh_host, ssh_host_factory  # noqa: F401
from aep_ops.testing.pebble import ari_shim, pebble  # noqa: F401
