"""The catalogue's HTTP API for jobs (DESIGN §7): start a project over a dataset, take its files
one at a time, report what became of each, declare output files with their parents.

Authenticated only by a bearer token — the per-submission token a launch and its jobs receive
as POMS_SUBMISSION_TOKEN, or a personal API token — never by a session cookie, so these
endpoints need no CSRF token and a foreign page can do nothing with a logged-in browser.
Every URL names its experiment: a callback token works only in its own experiment, a personal
token only where its owner is a member (or root). Errors are `{"error": "..."}` with a 4xx
status, and a refused request changes nothing.
"""

import json
from functools import wraps

from django import forms
from django.core.exceptions import RequestDataTooBig, ValidationError
from django.core.validators import RegexValidator
from django.db import IntegrityError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from poms.models import Experiment
from poms.permissions import token_actor
from poms.tokens import caller

from . import query as q
from .catalog import CatalogHandler
from .interface import DataHandlerError
from .models import CatalogFile, FileStatus, Project

MAX_PARENTS = 10_000
MAX_METADATA_CHARS = 100_000
INT32 = 2**31 - 1
# Names travel in URL paths (projects/<name>/next, datasets/<name>/files), so no "/"; a space or
# control character is always a mistake (a path or two names pasted together).
NAME = RegexValidator(r"^[^/\s\x00-\x1f\x7f]+$", "may not contain '/', spaces or control characters")


class ApiError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _error(status, message):
    return JsonResponse({"error": message}, status=status)


# --- input -----------------------------------------------------------------------------------
# Django's fields coerce whatever they get with str()/int(); from JSON we want the type we asked
# for, so {"size": "12"} or {"name": {"a": 1}} is refused instead of silently stored.
class StringOnly:
    def to_python(self, value):
        if value not in self.empty_values and not isinstance(value, str):
            raise ValidationError("must be a string")
        return super().to_python(value)


class StrictChar(StringOnly, forms.CharField):
    pass


class StrictChoice(StringOnly, forms.ChoiceField):
    pass


class StrictDateTime(StringOnly, forms.DateTimeField):
    pass


class StrictInt(forms.IntegerField):
    def to_python(self, value):
        if value not in self.empty_values and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValidationError("must be an integer")
        return super().to_python(value)


class JsonObject(forms.Field):
    def to_python(self, value):
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValidationError("must be a JSON object")
        if len(json.dumps(value)) > MAX_METADATA_CHARS:
            raise ValidationError(f"is too large (at most {MAX_METADATA_CHARS} characters as JSON)")
        return value


class NameList(forms.Field):
    def to_python(self, value):
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ValidationError("must be a list of file names")
        if len(value) > MAX_PARENTS:
            raise ValidationError(f"has more than {MAX_PARENTS} names")
        names = list(dict.fromkeys(v.strip() for v in value))  # a repeated parent is one parentage row
        for name in names:
            if len(name) > 255:
                raise ValidationError(f"{name[:40]}…: a file name has at most 255 characters")
            NAME(name)
        return names


def name_field(**kwargs):
    return StrictChar(max_length=255, validators=[NAME], **kwargs)


class StartForm(forms.Form):
    project = name_field()
    dataset = name_field()


class ProcessForm(forms.Form):
    process = StrictChar(max_length=100)


class StatusForm(forms.Form):
    file = name_field()
    status = StrictChoice(choices=[(s, s) for s in (FileStatus.CONSUMED, FileStatus.FAILED, FileStatus.SKIPPED)])


class DeclareForm(forms.Form):
    name = name_field()
    size = StrictInt(min_value=0, max_value=2**63 - 1, required=False)
    checksum = StrictChar(max_length=100, required=False)
    version = StrictChar(max_length=100, required=False)
    run_number = StrictInt(min_value=0, max_value=INT32, required=False)
    subrun = StrictInt(min_value=0, max_value=INT32, required=False)
    event_count = StrictInt(min_value=0, max_value=INT32, required=False)
    end_time = StrictDateTime(required=False)
    metadata = JsonObject(required=False)
    parents = NameList(required=False)
    location = StrictChar(max_length=500, required=False)
    dataset = name_field(required=False)

    def clean(self):
        data = super().clean()
        if data.get("name") and data["name"] in (data.get("parents") or ()):
            raise ValidationError("a file cannot be its own parent")
        return data


class ListForm(forms.Form):
    limit = forms.IntegerField(min_value=1, required=False)


def _valid(form_class, data, *, strict=True):
    """The cleaned data, or ApiError(400) naming every problem. Unknown keys are refused so a
    typo ("parent" for "parents") is an error, not a silently ignored field."""
    if strict:
        unknown = sorted(set(data) - set(form_class.base_fields))
        if unknown:
            raise ApiError(
                400, f"unknown field(s): {', '.join(unknown)}; expected: {', '.join(form_class.base_fields)}"
            )
    form = form_class(data)
    if not form.is_valid():
        problems = [
            f"{'request' if field == '__all__' else field}: {' '.join(messages)}"
            for field, messages in form.errors.items()
        ]
        raise ApiError(400, "; ".join(problems))
    return form.cleaned_data


def _json_body(request):
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413, "request body too large") from None
    try:
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
    except (UnicodeDecodeError, ValueError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


# --- who may ask -------------------------------------------------------------------------------
def _catalog_for(request, experiment_name):
    """(the experiment's CatalogHandler, the Caller), or ApiError 401/403/404."""
    who = caller(request)
    if who is None:
        raise ApiError(401, "send Authorization: Bearer <token> (the job's POMS_SUBMISSION_TOKEN or a personal token)")
    experiment = Experiment.objects.filter(name=experiment_name).first()
    if experiment is None:
        raise ApiError(404, f"no experiment named {experiment_name!r}")
    if who.submission_id is not None:
        if who.experiment_id != experiment.pk:
            raise ApiError(
                403, f"the token of submission {who.submission_id} works only in its own experiment, not {experiment}"
            )
    elif token_actor(who.user, experiment).role is None:
        raise ApiError(403, f"{who.user.username} is not a member of experiment {experiment}")
    return CatalogHandler(experiment), who


def endpoint(method):
    """Method check, token, experiment scope and JSON body; the view returns (status, dict)."""

    def decorate(view):
        @csrf_exempt
        @wraps(view)
        def wrapped(request, experiment, **kwargs):
            if request.method != method:
                response = _error(405, f"use {method}")
                response["Allow"] = method
                return response
            try:
                cat, who = _catalog_for(request, experiment)
                body = _json_body(request) if method == "POST" else request.GET
                status, reply = view(request, cat, who, body, **kwargs)
            except ApiError as exc:
                return _error(exc.status, str(exc))
            except DataHandlerError as exc:
                # The handler's own refusals (a query it cannot evaluate, a file outside the
                # project) come after its transaction rolled back: nothing changed.
                return _error(400, str(exc))
            return JsonResponse(reply, status=status)

        return wrapped

    return decorate


def _project(cat, name, who):
    project = Project.objects.filter(experiment=cat.experiment, name=name).first()
    if project is None:
        raise ApiError(404, f"no project named {name!r} in experiment {cat.experiment}")
    _own(project, who)
    return project


def _own(project, who):
    """A submission's project is its jobs' alone: its own callback token, no other launch's, and
    no person's token either (taking or failing a production project's files is not a member's
    to do by hand). Projects started without a submission are open to the experiment's members."""
    if project.submission_id is None or project.submission_id == who.submission_id:
        return
    if who.submission_id is None:
        raise ApiError(
            403,
            f"project {project.name} belongs to submission {project.submission_id}: only its jobs "
            "(with their POMS_SUBMISSION_TOKEN) may use it",
        )
    raise ApiError(
        403,
        f"the token of submission {who.submission_id} may not use project {project.name} "
        f"of submission {project.submission_id}",
    )


# --- endpoints ---------------------------------------------------------------------------------
@endpoint("POST")
def start_project(request, cat, who, body):
    """Start a project over a snapshot of a dataset, or join it if it exists (every job of a
    submission may call this; they all get the same project)."""
    data = _valid(StartForm, body)
    name, dataset = data["project"], data["dataset"]
    exists = Project.objects.filter(experiment=cat.experiment, name=name).exists()
    if not exists and not cat.definition_exists(dataset):
        raise ApiError(404, f"no dataset named {dataset!r} in experiment {cat.experiment}")
    try:
        project = cat.start_project(name, dataset, submission_id=who.submission_id)
    except IntegrityError:
        # Another job created it between the handler's look and its insert (rolled back): join it.
        project = cat.start_project(name, dataset, submission_id=who.submission_id)
    _own(project, who)
    if project.dataset != dataset:
        raise ApiError(409, f"project {name} already exists over dataset {project.dataset}, not {dataset}")
    reply = {"project": project.name, "dataset": project.dataset, "files": project.files.count()}
    return (200 if exists else 201), {**reply, "submission_id": project.submission_id, "status": project.status}


@endpoint("POST")
def next_file(request, cat, who, body, name):
    project = _project(cat, name, who)
    data = _valid(ProcessForm, body)
    f = cat.next_file(project, data["process"])
    if f is None:
        return 200, {"project": project.name, "file": None, "metadata": {}}
    return 200, {"project": project.name, "file": f.name, "metadata": f.metadata, "location": f.location}


@endpoint("POST")
def file_status(request, cat, who, body, name):
    project = _project(cat, name, who)
    data = _valid(StatusForm, body)
    cat.set_file_status(project, data["file"], data["status"])
    return 200, {"project": project.name, "file": data["file"], "status": data["status"]}


@endpoint("POST")
def end_process(request, cat, who, body, name):
    project = _project(cat, name, who)
    data = _valid(ProcessForm, body)
    cat.end_process(project, data["process"])
    project.refresh_from_db(fields=["status"])
    return 200, {"project": project.name, "process": data["process"], "status": project.status}


@endpoint("POST")
def declare(request, cat, who, body):
    """Declare an output file; declared_by_submission is the callback token's submission."""
    data = _valid(DeclareForm, body)
    attrs = {k: v for k, v in data.items() if k not in ("name", "parents", "dataset") and v not in (None, "")}
    try:
        f = cat.declare(
            data["name"], parents=data["parents"], dataset=data["dataset"] or None, submission_id=who.submission_id,
            **attrs,
        )  # fmt: skip
    except DataHandlerError as exc:
        # declare() is one transaction: after a refusal the name exists only if it was already there.
        duplicate = CatalogFile.objects.filter(experiment=cat.experiment, name=data["name"]).exists()
        raise ApiError(409 if duplicate else 400, str(exc)) from None
    reply = {"file": f.name, "parents": data["parents"], "dataset": data["dataset"] or None}
    return 201, {**reply, "declared_by_submission": f.declared_by_submission}


def _dataset(cat, name):
    if not cat.definition_exists(name):
        raise ApiError(404, f"no dataset named {name!r} in experiment {cat.experiment}")
    return q.Dataset(name)


@endpoint("GET")
def dataset_files(request, cat, who, params, name):
    dataset = _dataset(cat, name)
    limit = _valid(ListForm, params, strict=False)["limit"]
    return 200, {"dataset": name, "files": cat.list_files(dataset, limit=limit)}


@endpoint("GET")
def dataset_count(request, cat, who, params, name):
    return 200, {"dataset": name, "count": cat.count(_dataset(cat, name))}
