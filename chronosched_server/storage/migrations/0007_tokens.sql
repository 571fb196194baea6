-- Bearer tokens (docs/security.md). The secret itself is never stored: only
-- the SHA-256 of the whole token text (chronosched_server/tokens.py says why
-- a fast hash is enough for 256 random bits). A token is looked up by its id,
-- the part of the text between `cs_` and the secret.
create table tokens (
    token_id text primary key,
    token_hash bytea not null,
    scope text not null,
    -- The one namespace a read, write or worker token is for; null means
    -- every namespace (an admin token, or one created for `*`). Deleting the
    -- namespace deletes its tokens: a namespace created again under the same
    -- id starts without any.
    namespace_id text references namespaces (namespace_id) on delete cascade,
    description text not null default '',
    create_time timestamptz not null default clock_timestamp(),
    -- Null: never expires.
    expire_time timestamptz,
    -- Set once by RevokeToken; a revoked token is refused from then on.
    revoke_time timestamptz,
    -- Updated at most once a minute per token, on an authorised call.
    last_used_time timestamptz,
    constraint tokens_scope_known check (scope in ('read', 'write', 'worker', 'admin')),
    constraint tokens_admin_everywhere check (scope <> 'admin' or namespace_id is null),
    constraint tokens_hash_is_sha256 check (octet_length(token_hash) = 32)
);

-- DeleteNamespace's cascade and ListTokens' namespace filter.
create index tokens_namespace_idx on tokens (namespace_id);
