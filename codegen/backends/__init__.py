"""Backend folders: each subpackage registers its layout with ``codegen.kernels.register`` when
imported, so a new backend is a new folder and no central file lists it."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
