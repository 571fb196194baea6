-- name: insert_namespace
insert into namespaces (namespace_id, description)
values (%(namespace_id)s::text, %(description)s::text)
returning namespace_id, description, create_time;

-- name: get_namespace
select namespace_id, description, create_time
from namespaces
where namespace_id = %(namespace_id)s::text;

-- name: list_namespaces
select namespace_id, description, create_time
from namespaces
where %(after)s::text is null or namespace_id > %(after)s::text
order by namespace_id
limit %(limit)s::int;

-- name: claim_request_id
-- The first caller inserts the key; a concurrent retry blocks here until the
-- first commits, then finds the row and returns the first call's result.
insert into request_ids (namespace_id, method, request_id)
values (%(namespace_id)s::text, %(method)s::text, %(request_id)s::text)
on conflict do nothing
returning request_id;

-- name: get_request_id
select resource_ids
from request_ids
where namespace_id = %(namespace_id)s::text
  and method = %(method)s::text
  and request_id = %(request_id)s::text;

-- name: set_request_id
update request_ids
set resource_ids = %(resource_ids)s::uuid[]
where namespace_id = %(namespace_id)s::text
  and method = %(method)s::text
  and request_id = %(request_id)s::text;
