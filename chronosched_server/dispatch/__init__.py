"""The dispatcher behind Dequeue: pushes frontier jobs to connected workers,
applies their results in group commits, keeps leases and reaps expired ones."""
