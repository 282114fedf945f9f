"""The data-handling interface (DESIGN §7): one per backend, chosen per campaign.

Every method may raise DataHandlerError; callers show "unavailable: <reason>" on pages and
retry in background work, never crash.
"""

from abc import ABC, abstractmethod


class DataHandlerError(Exception):
    """The backend failed or refused (timeouts, 5xx, bad replies, unsupported query)."""


class DataHandler(ABC):
    name = ""

    @abstractmethod
    def count(self, query) -> int:
        """Number of files the query selects."""

    @abstractmethod
    def list_files(self, query, limit=None) -> list:
        """File names the query selects, in a stable order."""

    @abstractmethod
    def define(self, name, query) -> None:
        """Create (or replace) the named dataset `name` as `query`."""

    @abstractmethod
    def delete_definition(self, name) -> None:
        """Remove a named dataset; missing is not an error."""

    @abstractmethod
    def definition_exists(self, name) -> bool: ...

    @abstractmethod
    def snapshot(self, query) -> int:
        """Freeze the files `query` selects now; returns the snapshot id."""

    @abstractmethod
    def project_summary(self, project):
        """A query.ProjectSummary for `project`; raises DataHandlerError if it is unknown."""

    @abstractmethod
    def process_recovery(self, project):
        """The query of files the project's processes did not finish (SAM
        recovery_dimensions?useProcess=1), or None when nothing needs recovering."""

    @abstractmethod
    def file_metadata(self, name) -> dict:
        """A file's metadata in SAM's shape; `runs` is a list of [run, subrun, type]."""
