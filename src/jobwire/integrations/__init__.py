"""Worker integrations: live job status from Celery (`jobwire.integrations.celery`) and RQ
(`jobwire.integrations.rq`). Both build on `jobwire.reporter`; neither module imports its
framework until used, so install only the one you need (`pip install jobwire[celery]` or
`jobwire[rq]`)."""
