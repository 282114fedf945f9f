"""The data-handling seam (DESIGN §7). Splits, recovery, dependencies and wrapup will speak
this interface; its query algebra and the `catalog` / `samweb` backends are issue #4.
Nothing implements it yet, and nothing calls it."""

from typing import Protocol


class DataHandler(Protocol):
    def count(self, query) -> int: ...

    def list_files(self, query, limit: int | None = None) -> list[str]: ...

    def define_dataset(self, name: str, query) -> None: ...

    def snapshot(self, query) -> int: ...

    def project_summary(self, project: str) -> dict: ...
