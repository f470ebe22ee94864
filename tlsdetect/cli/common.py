"""Click parameter types shared by every command: paths and ``--mesh-ca``.

A path a user mistypes must end in one line naming the option, never in a traceback from deep
inside a reader or a writer. ``click.Path`` checks a path that exists; what it lets through is
checked here once for every command: an empty value (``Path("")`` is the current directory, so
``-o ""`` would write a baseline into it and ``--baseline ""`` would load one from it), and a path
to be written whose directory does not exist or is not a directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import click

from tlsdetect.detect.baseline import DEPRECATED_AUTO, MeshCA, parse_mesh_cas

__all__ = ["MESH_CA_HELP", "UserPath", "mesh_ca_option"]


class UserPath(click.Path):
    """``click.Path`` that also refuses an empty value and, with ``output=True``, a path that cannot be made.

    ``output=True`` is a file or directory the command writes: a file's directory must exist; a
    directory is created with its parents, so the nearest existing ancestor must be a directory.
    """

    def __init__(self, *, output: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output = output

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str | os.PathLike) and not os.fspath(value).strip():
            self.fail("the path is empty", param, ctx)
        out = super().convert(value, param, ctx)
        if self.output:
            path = Path(os.fsdecode(out)).absolute()
            if not self.dir_okay:  # a file: written where it is, its directory is not created
                if not path.parent.is_dir():
                    self.fail(f"{path.parent}: no such directory", param, ctx)
            else:
                ancestor = next((p for p in (path, *path.parents) if p.exists()), None)
                if ancestor is not None and not ancestor.is_dir():
                    self.fail(f"{ancestor} is a file, so {path} cannot be created", param, ctx)
        return out


MESH_CA_HELP = ("The mesh's CA: a PEM file or a DN ('CN=...,O=...'); repeat for several. Default: no mesh CA "
                "(issuer signals use the knowledge base only). 'learn' learns the dominant private issuer of "
                "PATHS (only for traffic known to be mesh-only; flagged as LEARNED everywhere); 'auto' is its "
                "deprecated old name; 'none' is the default said out loud.")


def _mesh_ca(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[MeshCA] | Literal["learn"]:
    if any(v.strip().lower() == DEPRECATED_AUTO for v in value):
        click.echo("warning: --mesh-ca auto is deprecated and no longer the default: it means 'learn' (the mesh CA "
                   "is learned from the fitted traffic); write --mesh-ca learn, or give the CA", err=True)
    try:
        return parse_mesh_cas(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


def mesh_ca_option(f: Any) -> Any:
    """``--mesh-ca`` (repeatable), parsed into what ``Baseline(mesh_ca=...)`` takes."""
    return click.option("--mesh-ca", "mesh_ca", multiple=True, metavar="FILE.pem|DN|learn|none",
                        callback=_mesh_ca, help=MESH_CA_HELP)(f)
