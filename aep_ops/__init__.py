"""aep-ops: the AEP platform's runbooks as code.

Importing this package must stay cheap: the CLI lists tasks in well under 0.3 s,
so heavy libraries (boto3, psycopg, fabric, paramiko) are imported inside functions.
"""

__version__ = "0.1.0"
