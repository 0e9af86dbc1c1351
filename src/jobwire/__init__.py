"""jobwire: live job status for the people who started the jobs."""

__version__ = "0.1.0"
