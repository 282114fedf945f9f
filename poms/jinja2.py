"""The one Jinja2 environment: url/static globals and the few filters pages need."""

import json
from datetime import timedelta

from django.contrib.messages import get_messages
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django_htmx.jinja import django_htmx_script
from jinja2 import Environment
from markupsafe import Markup

from .header import header_for

STATUS_CLASS = {
    1000: "new", 1500: "cancelled", 2000: "failed", 2400: "waiting", 3000: "idle", 4000: "running",
    5000: "held", 6000: "failed", 7000: "completed", 8000: "located", 9000: "removed",
}  # fmt: skip


def url(name, *args, **kwargs):
    return reverse(name, args=args or None, kwargs=kwargs or None)


def ago(value):
    """'3 min ago' for a past datetime."""
    if value is None:
        return "never"
    seconds = int((timezone.now() - value).total_seconds())
    if seconds < 60:
        return f"{max(seconds, 0)} s ago"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


def duration(value):
    if value is None:
        return ""
    seconds = int(value.total_seconds() if isinstance(value, timedelta) else value)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def utc(value):
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""


def json_script(value, element_id):
    """Embed data for page scripts without an XSS hole (like Django's json_script)."""
    text = json.dumps(value, default=str).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(f'<script type="application/json" id="{element_id}">{text}</script>')


def environment(**options):
    env = Environment(**options)
    env.globals.update(
        url=url,
        static=static,
        django_htmx_script=django_htmx_script,
        header_for=header_for,
        get_messages=get_messages,
    )
    env.filters.update(
        ago=ago,
        duration=duration,
        utc=utc,
        json_script=json_script,
        status_class=lambda s: STATUS_CLASS.get(int(s), "new"),
    )
    return env
