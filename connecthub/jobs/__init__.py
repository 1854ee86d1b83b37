"""The job plugin contract (`BaseJob`) and the definition of a job (`JobSpec`)."""

from connecthub.jobs.base import BaseJob, JobConfigError, JobContext, step

__all__ = ["BaseJob", "JobConfigError", "JobContext", "step"]
