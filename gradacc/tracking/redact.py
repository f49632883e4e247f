"""Credentials inside a URI (`http://alice:PASSWORD@host`, `postgresql://user:PASSWORD@db`) are never shown or
saved: every URI and every store error gradacc prints, links, tags or writes to disk goes through `redact` first.
No mlflow import: the CLI's last line uses it too."""
from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

# scheme://user:password@ : the user stays (it says who was refused), the password becomes ***
USERINFO = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*):(?P<password>[^@/\s'\"]+)@")
HIDDEN = "***"
# MLflow prints "View run ... at: <tracking URI>/#/..." as each run ends; gradacc prints its own, redacted, links
QUIET_LINKS = "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    return USERINFO.sub(lambda m: f"{m['head']}:{HIDDEN}@", text)


def has_password(uri: str | None) -> bool:
    return bool(uri) and USERINFO.search(uri) is not None


def uri_user(uri: str | None) -> str | None:
    """The user named in a URI that also carries a password, else None."""
    if not has_password(uri):
        return None
    return urlsplit(uri).username


def quiet_mlflow_links(uri: str | None) -> None:
    """Where the URI carries a password, MLflow's own "View run ... at: <URI>" lines would print it: off."""
    if has_password(uri):
        os.environ.setdefault(QUIET_LINKS, "true")


def restored(saved_uri: str, current: str | None) -> str:
    """The store a run saved with a redacted URI goes back to: the current tracking URI when it is the same store
    (its password is the one to use), else the saved one without its user, so that MLflow takes the credentials
    from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD."""
    if f":{HIDDEN}@" not in saved_uri:
        return saved_uri
    if current and redact(current) == saved_uri:
        return current
    parts = urlsplit(saved_uri)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
