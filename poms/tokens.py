"""Bearer tokens: personal API tokens and per-submission callback tokens share one format.

A token is shown once; only its SHA-256 is stored, so a database leak leaks no credential.
"""

import hashlib
import secrets
from dataclasses import dataclass

from django.utils import timezone

from .models import ApiToken, CallbackToken

PREFIX_USER = "pomsu_"
PREFIX_SUBMISSION = "pomss_"


def digest(token):
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix):
    return prefix + secrets.token_urlsafe(32)


def create_api_token(user, name):
    """A new personal token; returns (row, plaintext) — the plaintext is never stored."""
    token = new_token(PREFIX_USER)
    return ApiToken.objects.create(user=user, name=name[:100], digest=digest(token)), token


def bearer(request):
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def user_for_token(token):
    """The active user owning a personal token, or None."""
    if not token.startswith(PREFIX_USER):
        return None
    row = ApiToken.objects.select_related("user").filter(digest=digest(token)).first()
    if row is None or not row.user.is_active:
        return None
    ApiToken.objects.filter(pk=row.pk).update(last_used=timezone.now())
    return row.user


def issue_callback_token(user, experiment, submission_id):
    """A fresh token for one launch of `submission_id`; returns the plaintext."""
    token = new_token(PREFIX_SUBMISSION)
    CallbackToken.objects.create(digest=digest(token), user=user, experiment=experiment, submission_id=submission_id)
    return token


@dataclass(frozen=True)
class Caller:
    user: object
    submission_id: int | None = None  # set when the token is one launch's callback token
    experiment_id: int | None = None


def caller(request):
    """Who sent this API request: a Caller, or None without a valid bearer token."""
    token = bearer(request)
    if token.startswith(PREFIX_SUBMISSION):
        row = CallbackToken.objects.select_related("user").filter(digest=digest(token)).first()
        if row is None or not row.user.is_active:
            return None
        return Caller(row.user, row.submission_id, row.experiment_id)
    user = user_for_token(token)
    return Caller(user) if user else None
