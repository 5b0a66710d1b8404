"""URL routes: the staff app now; the portal, API and webhooks mount here as they land."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import path

from casewatch.web import account, team, views


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", views.home, name="home"),
    path("welcome/", views.welcome, name="welcome"),
    path("login/", account.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("language/", account.switch_language, name="language"),
    path("password/reset/", account.PasswordResetView.as_view(), name="password_reset"),
    path(
        "password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("invitations/<str:token>/", account.accept_invitation, name="invitation"),
    path("team/", team.team_page, name="team"),
    path("team/members/<int:pk>/role/", team.change_role, name="team-role"),
    path("team/members/<int:pk>/remove/", team.remove_member, name="team-remove"),
    path(
        "team/invitations/<int:pk>/withdraw/",
        team.withdraw_invitation,
        name="team-withdraw",
    ),
    path("cases/", views.case_list, name="case-list"),
    path("cases/<int:pk>/", views.case_detail, name="case-detail"),
    path("health", health, name="health"),
]
