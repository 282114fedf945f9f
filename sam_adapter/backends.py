"""Which data handler a campaign uses (DESIGN §7): chosen per campaign, default from settings."""

from django.conf import settings

from .interface import DataHandlerError


def handler_for(experiment, name=None):
    """The DataHandler called `name` (or the configured default) for `experiment`."""
    name = name or settings.POMS_DATA_HANDLER
    if name == "catalog":
        from .catalog import CatalogHandler

        return CatalogHandler(experiment)
    if name == "samweb":
        from .samweb import SamwebHandler

        return SamwebHandler(experiment.name)
    raise DataHandlerError(f"unknown data handling backend {name!r}; known: catalog, samweb")
