-- name: insert_token
-- ttl null: the token never expires. The expiry is computed in database time,
-- from the same clock reading as create_time: two clock_timestamp() calls
-- would differ by a microsecond or so, and a 30-day token would not last
-- exactly 30 days from its creation.
insert into tokens (token_id, token_hash, scope, namespace_id, description, create_time,
                    expire_time)
select %(token_id)s::text, %(token_hash)s::bytea, %(scope)s::text, %(namespace_id)s::text,
       %(description)s::text, t.now, t.now + %(ttl)s::interval
from (select clock_timestamp() as now) t
returning token_id, scope, namespace_id, description, create_time, expire_time, revoke_time,
          last_used_time;

-- name: find_token
-- What a call's check needs, with the time comparisons made here, in
-- database time: expired, and whether last_used_time is due an update.
select token_id, token_hash, scope, namespace_id,
       expire_time is not null and expire_time <= clock_timestamp() as expired,
       revoke_time is not null as revoked,
       last_used_time is null or last_used_time < clock_timestamp() - interval '1 minute' as use_stale
from tokens
where token_id = %(token_id)s::text;

-- name: touch_token
update tokens
set last_used_time = clock_timestamp()
where token_id = %(token_id)s::text
  and (last_used_time is null or last_used_time < clock_timestamp() - interval '1 minute');

-- name: list_tokens
-- In id order (keyset on the primary key). Without `inactive`, only tokens
-- that still work: not revoked, not expired. `every_namespace` lists the
-- tokens for every namespace (null namespace_id) instead of one namespace's.
select token_id, scope, namespace_id, description, create_time, expire_time, revoke_time,
       last_used_time
from tokens
where (%(after)s::text is null or token_id > %(after)s::text)
  and (%(namespace_id)s::text is null or namespace_id = %(namespace_id)s::text)
  and (not %(every_namespace)s::boolean or namespace_id is null)
  and (%(inactive)s::boolean
       or (revoke_time is null and (expire_time is null or expire_time > clock_timestamp())))
order by token_id
limit %(limit)s::int;

-- name: revoke_token
-- Idempotent: a revoked token keeps its first revoke_time.
update tokens
set revoke_time = coalesce(revoke_time, clock_timestamp())
where token_id = %(token_id)s::text
returning token_id, scope, namespace_id, description, create_time, expire_time, revoke_time,
          last_used_time;

-- name: revoke_tokens_described
-- `chronosched up` revokes the worker token an earlier run of it left
-- behind (one that was killed before it could revoke its own).
update tokens
set revoke_time = clock_timestamp()
where description = %(description)s::text and revoke_time is null;
