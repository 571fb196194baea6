-- When a worker last served each kind in each namespace, so CreateDefinition
-- can warn about a kind nobody has served lately (a typo such as `comand`
-- would otherwise sit READY in silence). Every replica's presence refresh
-- upserts the pairs of the streams it holds; scope '' stands for workers
-- serving every namespace. Rows are a few per (namespace, kind) ever served
-- and are never pruned.
create table served_kinds (
    scope text not null,
    kind text not null,
    last_seen timestamptz not null,
    primary key (scope, kind)
);
