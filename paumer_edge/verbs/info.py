"""`paumer-edge info [BUNDLE]`: this machine (versions, installed extras, backends, devices), or a bundle."""

from __future__ import annotations

import json as json_module

import click

from ..info import bundle_info, collect_info, format_bundle, format_info


@click.command("info", help="Versions, installed extras (and what to install for what is missing), inference "
               "backends and devices of this machine; with BUNDLE, that bundle's manifest: model, graphs, variants, "
               "exporter, engines.")
@click.argument("bundle", required=False)
@click.option("--json", is_flag=True, help="Machine-readable output.")
def command(bundle: str | None, json: bool) -> int:
    info = bundle_info(bundle) if bundle else collect_info()
    print(json_module.dumps(info, indent=2) if json else format_bundle(info) if bundle else format_info(info))
    return 0
