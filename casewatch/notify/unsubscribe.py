"""One-click unsubscribe links for client e-mail (RFC 8058), signed so no one can forge one.

A client's e-mail carries `List-Unsubscribe: <https://…/unsubscribe/TOKEN>` and
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`; a POST to that URL withdraws the
client's e-mail consent. The token names the client and channel, signed with the
installation's secret key; it does not expire (a years-old e-mail must still work).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

SALT = "casewatch.notify.unsubscribe"
PATH = "/unsubscribe/"


@dataclass(frozen=True)
class Unsubscribe:
    client_id: int
    channel: str


def unsubscribe_token(client_id: int, channel: str) -> str:
    return signing.dumps({"c": client_id, "ch": channel}, salt=SALT, compress=True)


def read_unsubscribe_token(token: str) -> Unsubscribe | None:
    """What a token names, or None when it was not made here (forged or altered)."""
    try:
        data = signing.loads(token, salt=SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("c"), int):
        return None
    return Unsubscribe(client_id=data["c"], channel=str(data.get("ch", "")))


def unsubscribe_headers(
    base_url: str | None, client_id: int, channel: str, mailbox: str
) -> dict[str, str]:
    """The List-Unsubscribe headers: one-click HTTPS when casewatch has a public address.

    Without one, a mailto: to the firm's sender address is the only way offered.
    """
    links = []
    if base_url:
        links.append(f"<{base_url.rstrip('/')}{PATH}{unsubscribe_token(client_id, channel)}>")
    address = mailbox.rsplit("<", 1)[-1].rstrip(">").strip()
    if "@" in address:
        links.append(f"<mailto:{address}?subject=unsubscribe>")
    if not links:
        return {}
    headers = {"List-Unsubscribe": ", ".join(links)}
    if base_url:
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


__all__ = [
    "PATH",
    "Unsubscribe",
    "read_unsubscribe_token",
    "unsubscribe_headers",
    "unsubscribe_token",
]
