from crawler import views
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("jobwire/", include("jobwire.integrations.django.urls")),  # jobwire/token/
    path("", views.index, name="index"),
    path("jobs/<str:job_id>/", views.job, name="job"),
]
