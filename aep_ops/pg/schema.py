"""The AEP demo schema and seed data used by drills and tests.

A small but realistic copy of the platform's database (identity, sessions, RBAC, audit
trail, two product tables) so a restore is checked against foreign keys, several index
types and enough rows to matter, plus ``drill_markers`` for DR sentinels. All DDL is
``if not exists`` and the seed only tops tables up, so running it twice is harmless.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aep_ops.pg.connect import wrap_errors

if TYPE_CHECKING:
    import psycopg

DDL = """
create table if not exists roles (
    id smallint generated always as identity primary key,
    name text not null unique,
    description text not null default '',
    created_at timestamptz not null default now()
);
create table if not exists permissions (
    id integer generated always as identity primary key,
    code text not null unique,
    description text not null default ''
);
create table if not exists role_permissions (
    role_id smallint not null references roles (id) on delete cascade,
    permission_id integer not null references permissions (id) on delete cascade,
    primary key (role_id, permission_id)
);
create index if not exists role_permissions_permission_idx on role_permissions (permission_id);
create table if not exists users (
    id bigint generated always as identity primary key,
    email text not null,
    display_name text not null,
    password_hash text not null,
    status text not null default 'active' check (status in ('active', 'invited', 'suspended', 'deleted')),
    mfa_enabled boolean not null default false,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    last_login_at timestamptz
);
create unique index if not exists users_email_key on users (lower(email));
create index if not exists users_created_at_idx on users (created_at);
create table if not exists user_roles (
    user_id bigint not null references users (id) on delete cascade,
    role_id smallint not null references roles (id),
    granted_by bigint references users (id) on delete set null,
    granted_at timestamptz not null default now(),
    primary key (user_id, role_id)
);
create index if not exists user_roles_role_idx on user_roles (role_id);
create table if not exists sessions (
    id uuid primary key default gen_random_uuid(),
    user_id bigint not null references users (id) on delete cascade,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    revoked_at timestamptz,
    ip_address inet,
    user_agent text
);
create index if not exists sessions_user_idx on sessions (user_id);
create index if not exists sessions_live_expiry_idx on sessions (expires_at) where revoked_at is null;
create table if not exists projects (
    id bigint generated always as identity primary key,
    owner_id bigint not null references users (id),
    slug text not null unique,
    name text not null,
    visibility text not null default 'private' check (visibility in ('private', 'internal', 'public')),
    created_at timestamptz not null default now(),
    archived_at timestamptz
);
create index if not exists projects_owner_idx on projects (owner_id);
create table if not exists documents (
    id bigint generated always as identity primary key,
    project_id bigint not null references projects (id) on delete cascade,
    author_id bigint not null references users (id),
    title text not null,
    body text not null default '',
    version integer not null default 1 check (version > 0),
    metadata jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index if not exists documents_project_updated_idx on documents (project_id, updated_at desc);
create index if not exists documents_author_idx on documents (author_id);
create table if not exists audit_events (
    id bigint generated always as identity primary key,
    occurred_at timestamptz not null default now(),
    actor_id bigint references users (id) on delete set null,
    action text not null,
    target_type text not null,
    target_id text,
    ip_address inet,
    details jsonb not null default '{}'
);
create index if not exists audit_events_occurred_idx on audit_events (occurred_at);
create index if not exists audit_events_actor_idx on audit_events (actor_id, occurred_at);
create table if not exists drill_markers (
    id bigint generated always as identity primary key,
    label text not null,
    created_at timestamptz not null default clock_timestamp()
);
create index if not exists drill_markers_label_idx on drill_markers (label);
"""

# Each statement tops its table up to the target count; %(x)s are per-scale parameters.
# ``n`` comes from a one-row CTE, not from a window over ``u``: with ``u.rn = 1 + g % u.n`` the
# join key depended on both sides, so PostgreSQL could only nest-loop it (quadratic in scale).
_USERS_CTE = ("with u as (select id, row_number() over (order by id) as rn from users),"
              " un as (select count(*) as n from users)")
SEED = {
    "roles": """insert into roles (name, description)
        select r, initcap(r) || ' role' from unnest(array['owner', 'admin', 'editor', 'viewer', 'auditor']) r
        on conflict (name) do nothing""",
    "permissions": """insert into permissions (code, description)
        select res || ':' || act, 'May ' || act || ' ' || res
        from unnest(array['users', 'roles', 'projects', 'documents', 'audit', 'sessions']) res,
             unnest(array['read', 'write', 'delete']) act
        on conflict (code) do nothing""",
    "role_permissions": """insert into role_permissions (role_id, permission_id)
        select r.id, p.id from roles r join permissions p on
            r.name = 'owner'
            or (r.name = 'admin' and p.code <> 'audit:delete')
            or (r.name = 'editor' and p.code ~ '^(projects|documents):(read|write)$')
            or (r.name = 'viewer' and p.code ~ '^(projects|documents):read$')
            or (r.name = 'auditor' and p.code in ('audit:read', 'users:read', 'sessions:read'))
        on conflict do nothing""",
    "users": """insert into users (email, display_name, password_hash, status, mfa_enabled, created_at, last_login_at)
        select 'user' || g || '@aep.example', 'User ' || g,
               '$argon2id$v=19$m=65536,t=3,p=4$' || md5('salt' || g) || '$' || md5('hash' || g),
               case when g %% 50 = 0 then 'suspended' when g %% 17 = 0 then 'invited' else 'active' end,
               g %% 3 = 0, now() - make_interval(hours => g), now() - make_interval(mins => g)
        from generate_series(1, %(users)s::int) g
        on conflict (lower(email)) do nothing""",
    "user_roles": """insert into user_roles (user_id, role_id)
        select u.id, r.id from users u join roles r on
            r.name = 'viewer' or (r.name = 'editor' and u.id %% 5 = 0)
            or (r.name = 'admin' and u.id %% 50 = 0) or (r.name = 'owner' and u.id = 1)
        on conflict do nothing""",
    "sessions": _USERS_CTE + """
        insert into sessions (user_id, created_at, expires_at, revoked_at, ip_address, user_agent)
        select u.id, now() - make_interval(mins => g), now() + make_interval(hours => 12 - g %% 24),
               case when g %% 10 = 0 then now() end, ('10.' || g %% 250 || '.' || g %% 200 || '.7')::inet,
               (array['Mozilla/5.0 (X11; Linux x86_64)', 'Mozilla/5.0 (Macintosh)', 'aep-cli/2.3'])[1 + g %% 3]
        from generate_series(1, greatest(%(sessions)s - (select count(*) from sessions), 0)::int) g
        cross join un join u on u.rn = 1 + g %% un.n""",
    "projects": _USERS_CTE + """
        insert into projects (owner_id, slug, name, visibility, archived_at)
        select u.id, 'project-' || g, 'Project ' || g,
               (array['private', 'internal', 'public'])[1 + g %% 3], case when g %% 20 = 0 then now() end
        from generate_series(1, %(projects)s::int) g cross join un join u on u.rn = 1 + (g * 7) %% un.n
        on conflict (slug) do nothing""",
    "documents": _USERS_CTE + """, p as (select id, row_number() over (order by id) as rn from projects),
                                  pn as (select count(*) as n from projects)
        insert into documents (project_id, author_id, title, body, version, metadata)
        select p.id, u.id, 'Document ' || g, repeat('Lorem ipsum dolor sit amet. ', 5 + g %% 40), 1 + g %% 7,
               jsonb_build_object('tags', jsonb_build_array('t' || g %% 9), 'words', 25 + g %% 200)
        from generate_series(1, greatest(%(documents)s - (select count(*) from documents), 0)::int) g
        cross join un cross join pn join p on p.rn = 1 + g %% pn.n join u on u.rn = 1 + (g * 13) %% un.n""",
    "audit_events": _USERS_CTE + """
        insert into audit_events (occurred_at, actor_id, action, target_type, target_id, ip_address, details)
        select now() - make_interval(secs => g * 37), u.id,
               (array['login', 'logout', 'document.update', 'project.create', 'role.grant'])[1 + g %% 5],
               (array['session', 'session', 'document', 'project', 'user'])[1 + g %% 5], (g %% 997)::text,
               ('192.0.2.' || g %% 250)::inet, jsonb_build_object('request_id', md5(g::text))
        from generate_series(1, greatest(%(audit_events)s - (select count(*) from audit_events), 0)::int) g
        cross join un join u on u.rn = 1 + g %% un.n""",
}


def targets(scale: int) -> dict[str, int]:
    """Row targets per scale: scale 1 is a few thousand rows (seeds in well under 2 s)."""
    s = max(int(scale), 1)
    return {"users": 500 * s, "sessions": 1000 * s, "projects": 100 * s, "documents": 1000 * s,
            "audit_events": 2000 * s}


def ensure_schema(conn: psycopg.Connection) -> None:
    with wrap_errors("creating the AEP demo schema", conn), conn.transaction():
        conn.execute(DDL)


def seed(conn: psycopg.Connection, scale: int = 1) -> dict[str, int]:
    """Create the schema and top every table up to its target; return rows inserted per table."""
    ensure_schema(conn)
    params = targets(scale)
    inserted: dict[str, int] = {}
    with wrap_errors("seeding the AEP demo schema", conn), conn.transaction():
        for table, statement in SEED.items():
            cur = conn.execute(statement, params)
            inserted[table] = max(cur.rowcount, 0)
        conn.execute("analyze")
    return inserted


def insert_marker(conn: psycopg.Connection, label: str) -> int:
    """Write one DR sentinel row (committed on return when the connection autocommits)."""
    with wrap_errors("inserting a drill marker", conn):
        return int(conn.execute("insert into drill_markers (label) values (%s) returning id", (label,)).fetchone()[0])


def markers_present(conn: psycopg.Connection, ids: list[int]) -> set[int]:
    """Which of the DR sentinel rows ``ids`` the database holds."""
    with wrap_errors("reading the drill markers", conn):
        return {int(r[0]) for r in conn.execute("select id from drill_markers where id = any(%s)", (list(ids),))}
