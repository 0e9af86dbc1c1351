from django.urls import include, path

# As celery-progress's README says (with `path`, so no regex anchor): the watchers poll
# /celery-progress/<task_id>/.
urlpatterns = [
    path("celery-progress/", include("celery_progress.urls")),
]
