"""URL routes: the staff app, the client portal, the REST API and provider webhooks."""

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import path

from casewatch.api.main import not_found
from casewatch.api.main import urls as api_urls
from casewatch.portal import unsubscribe as portal_unsubscribe
from casewatch.portal import views as portal_views
from casewatch.web import (
    access_log,
    account,
    api_tokens,
    calendar_feed,
    case_list,
    case_page,
    client_contact,
    dashboard,
    deadlines,
    exports,
    insights,
    intake,
    messaging_settings,
    my_account,
    outbox,
    provider_webhooks,
    status_check,
    team,
    two_factor,
    views,
    webhooks,
)


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


urlpatterns = [
    path("", views.home, name="home"),
    path("welcome/", views.welcome, name="welcome"),
    path("dashboard/seen/", dashboard.mark_seen, name="dashboard-seen"),
    path("changes/<int:pk>/acknowledge/", dashboard.acknowledge, name="change-acknowledge"),
    path("changes/<int:pk>/assign/", dashboard.assign, name="change-assign"),
    path("changes/<int:pk>/comment/", dashboard.comment, name="change-comment"),
    path("login/", account.LoginView.as_view(), name="login"),
    path("login/code/", two_factor.enter_code, name="two-factor-code"),
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
        account.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("invitations/<str:token>/", account.accept_invitation, name="invitation"),
    path("account/", my_account.my_account, name="my-account"),
    path("account/two-factor/", two_factor.set_up, name="two-factor-set-up"),
    path(
        "account/two-factor/recovery-codes/",
        two_factor.recovery_codes,
        name="two-factor-recovery-codes",
    ),
    path("account/two-factor/off/", two_factor.turn_off, name="two-factor-off"),
    path("firm/", my_account.switch_firm, name="switch-firm"),
    path("dashboard/uscis/", dashboard.uscis_part, name="dashboard-uscis"),
    path("dashboard/changes/", dashboard.changes_part, name="dashboard-changes"),
    path("team/", team.team_page, name="team"),
    path("team/access-log/", access_log.access_log, name="access-log"),
    path("team/api-tokens/", api_tokens.api_tokens, name="team-api-tokens"),
    path("team/api-tokens/<int:pk>/revoke/", api_tokens.revoke, name="team-api-token-revoke"),
    path("settings/messaging/", messaging_settings.messaging_settings, name="messaging-settings"),
    path("settings/messaging/webhooks/", webhooks.webhooks, name="webhooks"),
    path("settings/messaging/webhooks/<int:pk>/", webhooks.webhook, name="webhook"),
    path(
        "settings/messaging/webhooks/<int:pk>/delete/",
        webhooks.delete_webhook,
        name="webhook-delete",
    ),
    path("settings/messaging/webhooks/<int:pk>/test/", webhooks.test_webhook, name="webhook-test"),
    path("settings/messaging/rules/new/", messaging_settings.add_rule, name="messaging-rule-add"),
    path("settings/messaging/rules/<int:pk>/", messaging_settings.edit_rule, name="messaging-rule"),
    path(
        "settings/messaging/rules/<int:pk>/delete/",
        messaging_settings.delete_rule_view,
        name="messaging-rule-delete",
    ),
    path(
        "settings/messaging/rules/<int:pk>/move/",
        messaging_settings.move_rule_view,
        name="messaging-rule-move",
    ),
    path("team/members/<int:pk>/role/", team.change_role, name="team-role"),
    path("team/members/<int:pk>/remove/", team.remove_member, name="team-remove"),
    path(
        "team/invitations/<int:pk>/withdraw/",
        team.withdraw_invitation,
        name="team-withdraw",
    ),
    path("cases/", case_list.case_list, name="case-list"),
    path("cases/export.csv", exports.cases_csv, name="cases-csv"),
    path("cases/status-changes.csv", exports.events_csv, name="events-csv"),
    path("cases/views/", case_list.save_view, name="case-view-save"),
    path("cases/views/<int:pk>/delete/", case_list.delete_view, name="case-view-delete"),
    path("cases/<int:pk>/", case_page.case_detail, name="case-detail"),
    path("cases/<int:pk>/edit/", case_page.edit_case, name="case-edit"),
    path("cases/<int:pk>/notes/", case_page.add_note, name="case-note"),
    path("cases/<int:pk>/archive/", case_page.archive_case, name="case-archive"),
    path("deadlines/", deadlines.deadline_list, name="deadline-list"),
    path("deadlines/<int:pk>/", deadlines.deadline_detail, name="deadline-detail"),
    path("deadlines/<int:pk>/done/", deadlines.mark_done, name="deadline-done"),
    path("deadlines/<int:pk>/reopen/", deadlines.mark_open, name="deadline-reopen"),
    path("deadlines/<int:pk>/computed-date/", deadlines.computed_date, name="deadline-computed"),
    path("deadlines/calendar/", calendar_feed.calendar_link, name="calendar-link"),
    path("calendar/<str:token>.ics", calendar_feed.feed, name="calendar-feed"),
    path("insights/", insights.insights, name="insights"),
    path("intake/", intake.intake_home, name="intake"),
    path("intake/case/", intake.add_one_case, name="intake-case"),
    path("intake/import/", intake.import_upload, name="intake-import"),
    path("intake/import/<str:token>/", intake.import_review, name="intake-import-review"),
    path("intake/import/<str:token>/commit/", intake.import_commit, name="intake-import-commit"),
    path("intake/import/<str:token>/done/", intake.import_done, name="intake-import-done"),
    path("intake/import/<str:token>/delete/", intake.import_discard, name="intake-import-delete"),
    path("intake/receipts/", intake.paste_receipts, name="intake-receipts"),
    path("intake/check/", status_check.status_check, name="status-check"),
    path("intake/check/<str:token>.csv", status_check.status_check_csv, name="status-check-csv"),
    path("outbox/", outbox.outbox, name="outbox"),
    path("outbox/<int:pk>/", outbox.notification_detail, name="notification-detail"),
    path("inbox/", outbox.inbox, name="inbox"),
    path("inbox/<int:pk>/", outbox.inbox_open, name="inbox-open"),
    path("clients/<int:pk>/contact/", client_contact.client_contact, name="client-contact"),
    path("clients/<int:pk>/consent/", client_contact.record_client_consent, name="client-consent"),
    path("clients/<int:pk>/channels/", client_contact.reorder_channels, name="client-channels"),
    path(
        "clients/<int:pk>/portal-links/",
        client_contact.create_portal_link,
        name="client-portal-link",
    ),
    path(
        "portal-links/<int:pk>/revoke/",
        client_contact.revoke_portal_link,
        name="portal-link-revoke",
    ),
    path("portal/<str:token>/", portal_views.portal, name="portal"),
    path("unsubscribe/<str:token>", portal_unsubscribe.unsubscribe, name="unsubscribe"),
    path("health", health, name="health"),
    # Fixed paths (spec/cli.md): no trailing slash, CSRF-exempt, signed or refused.
    path("webhooks/whatsapp", provider_webhooks.whatsapp, name="webhook-whatsapp"),
    path("webhooks/twilio", provider_webhooks.twilio, name="webhook-twilio"),
    # The REST API (docs/api.md): bearer tokens, no session, no CSRF.
    path("api/v1/", api_urls()),
    path("api/v1/<path:rest>", not_found, name="api-not-found"),
]

# A request too large to read gets a page saying so (413), not a bare "Bad Request".
handler400 = "casewatch.web.uploads.bad_request"
