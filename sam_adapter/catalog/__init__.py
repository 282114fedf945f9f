"""The `catalog` backend: the query algebra compiled to SQL over sam_adapter.models."""

import re

from django.db import IntegrityError, transaction
from django.db.models import Count, F, IntegerField, Q, Subquery, Value, Window
from django.db.models.functions import Mod, RowNumber
from django.utils import timezone

from .. import query as q
from ..interface import DataHandler, DataHandlerError
from ..models import CatalogFile, FileStatus, NamedDataset, Parentage, Project, ProjectFile, Snapshot

CONSUMED_LIKE = (FileStatus.CONSUMED, "completed")
SnapshotFile = Snapshot.files.through


def like_to_regex(pattern):
    """SQL LIKE (% and _) → an anchored regular expression."""
    parts = [".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern]
    return "^" + "".join(parts) + "$"


class CatalogHandler(DataHandler):
    name = "catalog"

    def __init__(self, experiment):
        self.experiment = experiment

    # --- compiling -----------------------------------------------------------------------
    def files(self, query, _seen=()):
        """The CatalogFile queryset `query` selects."""
        base = CatalogFile.objects.filter(experiment=self.experiment)
        match query:
            case q.Dataset(name=name):
                if name in _seen:
                    raise DataHandlerError(f"dataset {name} refers to itself")
                ds = NamedDataset.objects.filter(experiment=self.experiment, name=name).first()
                if ds is None:
                    raise DataHandlerError(f"no dataset named {name!r} in the catalogue")
                if ds.query is None:
                    return base.filter(pk__in=ds.files.values("pk"))
                return self.files(q.from_json(ds.query), (*_seen, name))
            case q.Snapshot(snapshot_id=sid):
                return base.filter(
                    pk__in=Snapshot.files.through.objects.filter(snapshot_id=sid).values("catalogfile_id")
                )
            case q.ProjectSnapshot(project=project):
                snap = Project.objects.filter(experiment=self.experiment, name=project).values("snapshot_id")
                through = SnapshotFile.objects.filter(snapshot_id__in=snap)
                return base.filter(pk__in=through.values("catalogfile_id"))
            case q.ProjectFiles(project=project, statuses=statuses):
                wanted = set()
                for status in statuses:
                    wanted |= set(CONSUMED_LIKE) if status == q.CONSUMED_LIKE else {status}
                rows = ProjectFile.objects.filter(
                    project__experiment=self.experiment, project__name=project, status__in=wanted
                )
                return base.filter(pk__in=rows.values("file_id"))
            case q.Match():
                return base.filter(self._match(query))
            case q.And(left=a, right=b):
                return self.files(a, _seen).filter(pk__in=self.files(b, _seen).values("pk"))
            case q.Minus(left=a, right=b):
                return self.files(a, _seen).exclude(pk__in=self.files(b, _seen).values("pk"))
            case q.Union(parts=parts):
                either = Q(pk__in=[])
                for part in parts:
                    either |= Q(pk__in=self.files(part, _seen).values("pk"))
                return base.filter(either)
            case q.Limit(source=src, limit=limit, offset=offset):
                ordered = self.files(src, _seen).order_by("name", "pk").values("pk")[offset : offset + limit]
                return base.filter(pk__in=Subquery(ordered))
            case q.Stride(source=src, stride=stride, offset=offset):
                numbered = self.files(src, _seen).annotate(
                    position=Window(RowNumber(), order_by=[F("name").asc(), F("pk").asc()])
                )
                numbered = numbered.annotate(slot=Mod(F("position") - 1, Value(stride), output_field=IntegerField()))
                return base.filter(pk__in=[row["pk"] for row in numbered.filter(slot=offset).values("pk")])
            case q.ParentsOf(source=src, depth=depth):
                return self._walk(base, self.files(src, _seen), depth, known="child", wanted="parent")
            case q.ChildrenOf(source=src, depth=depth):
                return self._walk(base, self.files(src, _seen), depth, known="parent", wanted="child")
            case q.Raw(backend=backend, text=text):
                raise DataHandlerError(f"the catalogue cannot evaluate a raw {backend} fragment: {text!r}")
        raise DataHandlerError(f"the catalogue does not know the query node {type(query).__name__}")

    @staticmethod
    def _walk(base, current, depth, *, known, wanted):
        """Follow parentage `depth` generations (output_ancestor_depth) from `current`."""
        for _ in range(max(depth, 1)):
            links = Parentage.objects.filter(**{f"{known}__in": current.values("pk")})
            current = base.filter(pk__in=links.values(wanted))
        return current

    @staticmethod
    def _match(m):
        cond = Q()
        if m.version is not None:
            cond &= Q(version=m.version)
        if m.name_like is not None:
            cond &= Q(name__regex=like_to_regex(m.name_like))
        if m.created_after is not None:
            cond &= Q(created__gt=m.created_after)
        if m.availability == "physical":
            cond &= ~Q(location="")
        if m.run_number is not None:
            cond &= Q(run_number=m.run_number)
        if m.end_time_after is not None:
            cond &= Q(end_time__gt=m.end_time_after)
        if m.end_time_until is not None:
            cond &= Q(end_time__lte=m.end_time_until)
        return cond

    # --- operations -----------------------------------------------------------------------
    def count(self, query):
        return self.files(query).count()

    def list_files(self, query, limit=None):
        names = self.files(query).order_by("name").values_list("name", flat=True)
        return list(names[:limit] if limit else names)

    def define(self, name, query):
        with transaction.atomic():
            NamedDataset.objects.update_or_create(
                experiment=self.experiment, name=name, defaults={"query": q.to_json(query)}
            )

    def delete_definition(self, name):
        NamedDataset.objects.filter(experiment=self.experiment, name=name).delete()

    def definition_exists(self, name):
        return NamedDataset.objects.filter(experiment=self.experiment, name=name).exists()

    def snapshot(self, query):
        with transaction.atomic():
            snap = Snapshot.objects.create(experiment=self.experiment)
            snap.files.add(*self.files(query).values_list("pk", flat=True))
        return snap.pk

    def project_summary(self, project):
        row = Project.objects.filter(experiment=self.experiment, name=project).first()
        if row is None:
            raise DataHandlerError(f"no project named {project!r} in the catalogue")
        counts = dict(row.files.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
        return q.ProjectSummary(
            project=project, status=row.status, files_in_snapshot=row.snapshot.files.count(), counts=counts
        )

    def file_metadata(self, name):
        f = CatalogFile.objects.filter(experiment=self.experiment, name=name).first()
        if f is None:
            raise DataHandlerError(f"no file named {name!r} in the catalogue")
        runs = [[f.run_number, f.subrun or 0, ""]] if f.run_number is not None else []
        return {**f.metadata, "file_name": f.name, "runs": runs}

    def process_recovery(self, project):
        leftover = q.Minus(q.ProjectSnapshot(project), q.ProjectFiles(project, (q.CONSUMED_LIKE,)))
        return leftover if self.count(leftover) else None

    # --- what jobs do (the HTTP API calls these) --------------------------------------------
    def declare(self, name, *, parents=(), dataset=None, submission_id=None, **attrs):
        """Declare an output file with its parents; optionally add it to an explicit dataset."""
        with transaction.atomic():
            try:
                with transaction.atomic():
                    f = CatalogFile.objects.create(
                        experiment=self.experiment, name=name, declared_by_submission=submission_id, **attrs
                    )
            except IntegrityError:
                raise DataHandlerError(f"file {name} is already declared") from None
            if parents:
                found = dict(
                    CatalogFile.objects.filter(experiment=self.experiment, name__in=parents).values_list("name", "pk")
                )
                missing = sorted(set(parents) - set(found))
                if missing:
                    raise DataHandlerError(f"unknown parent file(s): {', '.join(missing)}")
                Parentage.objects.bulk_create([Parentage(parent_id=pk, child=f) for pk in found.values()])
            if dataset:
                ds, _ = NamedDataset.objects.get_or_create(
                    experiment=self.experiment, name=dataset, defaults={"submission_id": submission_id}
                )
                if ds.query is not None:
                    raise DataHandlerError(f"dataset {dataset} is defined by a query; files cannot be added to it")
                if ds.submission_id is not None and ds.submission_id != submission_id:
                    # A generator's poms_depends_<sid>_1 feeds its Located check and its dependents.
                    owner = ds.submission_id
                    raise DataHandlerError(
                        f"dataset {dataset} is filled by submission {owner}'s jobs; only they add to it"
                    )
                ds.files.add(f)
        return f

    def start_project(self, name, dataset, submission_id=None):
        """A project over a snapshot of `dataset`; starting it again returns the same project."""
        with transaction.atomic():
            existing = Project.objects.filter(experiment=self.experiment, name=name).first()
            if existing is not None:
                return existing
            snap = self.snapshot(q.Dataset(dataset))
            project = Project.objects.create(
                experiment=self.experiment, name=name, dataset=dataset, snapshot_id=snap, submission_id=submission_id
            )
            ProjectFile.objects.bulk_create(
                [
                    ProjectFile(project=project, file_id=fid)
                    for fid in project.snapshot.files.values_list("pk", flat=True)
                ]
            )
        return project

    def next_file(self, project, process):
        """Hand the next undelivered file to `process`; None when none is left.

        SKIP LOCKED lets many jobs ask at once without waiting on each other or getting the
        same file."""
        with transaction.atomic():
            row = (
                # Only the project's row: another project handing out the same file must not hide it.
                ProjectFile.objects.select_for_update(skip_locked=True, of=("self",), no_key=True)
                .filter(project=project, status=FileStatus.PENDING)
                .order_by("id")
                .select_related("file")
                .first()
            )
            if row is None:
                return None
            row.status, row.process = FileStatus.DELIVERED, process[:100]
            row.save(update_fields=["status", "process", "updated"])
        return row.file

    def set_file_status(self, project, file_name, status):
        if status not in (FileStatus.CONSUMED, FileStatus.FAILED, FileStatus.SKIPPED):
            raise DataHandlerError(f"status must be consumed, failed or skipped, not {status!r}")
        updated = ProjectFile.objects.filter(project=project, file__name=file_name).update(status=status)
        if not updated:
            raise DataHandlerError(f"file {file_name} is not part of project {project.name}")

    def end_process(self, project, process):
        """A job is done: files it was given but never reported become unknown (as SAM does)."""
        ProjectFile.objects.filter(project=project, process=process, status=FileStatus.DELIVERED).update(
            status=FileStatus.UNKNOWN
        )
        if not ProjectFile.objects.filter(
            project=project, status__in=[FileStatus.PENDING, FileStatus.DELIVERED]
        ).exists():
            Project.objects.filter(pk=project.pk).update(status="completed", ended=timezone.now())
