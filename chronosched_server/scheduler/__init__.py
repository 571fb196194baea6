"""The cron scheduler: pure planning (`plan`), the database clock (`clock`)
and the loop that fires schedules inside every server process (`loop`)."""

from chronosched_server.scheduler.loop import PassResult, Scheduler, SchedulerConfig

__all__ = ["PassResult", "Scheduler", "SchedulerConfig"]
