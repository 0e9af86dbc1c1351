from django.urls import path

from . import views

app_name = "jobwire"
urlpatterns = [path("token/", views.token, name="token")]
