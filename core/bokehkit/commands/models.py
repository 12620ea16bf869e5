"""`bokehkit models list|install|verify|import|remove|path`."""

from __future__ import annotations

import argparse

from ..errors import BokehkitError
from ..store.store import ModelStore
from .bar import ProgressBar


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _store(args: argparse.Namespace) -> ModelStore:
    return ModelStore(getattr(args, "store", None))


def _bar(args: argparse.Namespace) -> ProgressBar:
    return ProgressBar(enabled=not getattr(args, "quiet", False))


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    for spec in store.manifest.models:
        if store.is_damaged(spec.id):
            state = f"DAMAGED: run bokehkit models verify {spec.id}"
        elif store.is_installed(spec.id):
            state = f"installed ({_mb(store.installed_size(spec.id))})"
        else:
            first = spec.files[0].sources[0]
            where = first.registry or first.url
            size = first.download_size or spec.size
            if spec.pinned or first.download_size:
                state = f"not installed (download {_mb(size)} from {where})"
            else:  # the hub states the size (and hash) when asked
                state = f"not installed (download from {where}, size as the hub states)"
            partial = store.partial_bytes(spec.id)
            if partial:
                state += f", {_mb(partial)} partly downloaded"
        print(f"{spec.id}\t{state}\t{spec.purpose}")
        if args.verbose:
            print(f"\t{spec.name}; licence: {spec.licence}")
    _list_magicbokeh(store)
    if args.verbose:
        print(f"store: {store.root}")
    return 0


def _list_magicbokeh(store: ModelStore) -> None:
    """MagicBokeh bundles are imported (converted from files the user has), not downloaded:
    one line per bundle in the store, or one saying how to import one."""
    from ..magicbokeh import bundle

    purpose = "the magicbokeh engine (one-step diffusion bokeh + SR)"
    folders = bundle.bundles_in(store.root)
    if not folders:
        print(f"{bundle.MODEL_ID}\tnot installed (import: {bundle.import_command()})\t{purpose}")
    for folder in folders:
        ok, reason = bundle.status(folder)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        state = f"installed ({_mb(size)}, imported)" if ok else f"damaged: {reason}"
        print(f"{folder.name}\t{state}\t{purpose}")


def _cmd_install(args: argparse.Namespace) -> int:
    store = _store(args)
    for model_id in args.ids:
        paths = store.install(model_id, force=args.force, progress=_bar(args))
        for p in paths:
            print(f"{model_id}: installed {p}")
        _finish(model_id, store)
    return 0


def _finish(model_id: str, store: ModelStore) -> None:
    """Work a model needs once after its files arrive, so the first render doesn't wait."""
    if model_id == "realesrgan-x4plus":
        from ..sr.realesrgan import finish_install

        finish_install(store, log=print)


def _cmd_import(args: argparse.Namespace) -> int:
    store = _store(args)
    if args.id == "magicbokeh":  # converted from SD 2.1 + lora.pkl, not copied
        return _import_magicbokeh(args, store)
    if not args.files:
        raise BokehkitError(f"models import {args.id}: give the file(s) to import")
    paths = store.import_files(args.id, args.files, progress=_bar(args), sha256=args.sha256)
    for p in paths:
        print(f"{args.id}: installed {p}")
    if not store.is_installed(args.id):
        raise BokehkitError(f"{args.id} still lacks files; import the others too")
    return 0


def _import_magicbokeh(args: argparse.Namespace, store: ModelStore) -> int:
    if not (args.sd21 and args.checkpoint) or args.files:
        raise BokehkitError(
            "usage: bokehkit models import magicbokeh --sd21 SD21_BASE_DIR "
            "--checkpoint lora.pkl [--name NAME]"
        )
    try:
        from ..magicbokeh.convert import import_magicbokeh  # torch + diffusers: only here
    except ImportError as exc:
        raise BokehkitError(
            f"importing MagicBokeh needs the full engine ({exc.name or exc} is missing)"
        ) from None
    log = (lambda _msg: None) if args.quiet else print
    import_magicbokeh(args.sd21, args.checkpoint, store.root, args.name, args.force, log)
    return 0


def _cmd_export_onnx(args: argparse.Namespace) -> int:
    try:
        from ..magicbokeh.onnx_export import export_magicbokeh_onnx  # torch: only here
    except ImportError as exc:
        raise BokehkitError(
            f"exporting MagicBokeh to ONNX needs the full engine ({exc.name or exc} is missing)"
        ) from None
    log = (lambda _msg: None) if args.quiet else print
    export_magicbokeh_onnx(_store(args).root / args.name, args.force, log)
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    store = _store(args)
    ids = args.ids or [m.id for m in store.manifest.models if store.model_dir(m.id).exists()]
    bad = 0
    for model_id in ids:
        for check in store.verify(model_id):
            print(f"{check.model_id}\t{check.name}\t{check.message}")
            bad += not check.ok
    if not ids:
        print("no models installed")
    return 2 if bad else 0


def _cmd_remove(args: argparse.Namespace) -> int:
    store = _store(args)
    for model_id in args.ids:
        if store.remove(model_id):
            print(f"{model_id}: removed")
        else:
            print(f"{model_id}: was not installed")
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    print(_store(args).require(args.id))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `models` command to the main parser's sub-commands."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--store",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help="model store (default: $BOKEHKIT_MODELS, else the user data folder)",
    )
    p = sub.add_parser(
        "models",
        parents=[common],
        help="list, install, verify, import and remove models",
        description="Models bokehkit can use. Nothing is downloaded except by 'install'.",
    )
    msub = p.add_subparsers(dest="models_command", required=True)
    q = msub.add_parser("list", parents=[common], help="one model a line, and whether installed")
    q.add_argument("-v", "--verbose", action="store_true", help="also print the store folder")
    q.set_defaults(run=_cmd_list)
    q = msub.add_parser("install", parents=[common], help="download, check and store models")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.add_argument("--force", action="store_true", help="download again even if installed")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.set_defaults(run=_cmd_install)
    q = msub.add_parser(
        "import", parents=[common], help="install from files you already have (offline)"
    )
    q.add_argument("id", metavar="ID")
    q.add_argument("files", nargs="*", metavar="FILE", help="the model file, or a source download")
    q.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    q.add_argument(
        "--sha256",
        metavar="HEX",
        help="for a file the manifest does not pin (Hugging Face's): the SHA-256 the hub "
        "shows on the file's page",
    )
    mb = q.add_argument_group("magicbokeh (converts, nothing to copy)")
    mb.add_argument("--sd21", metavar="DIR", help="Stable Diffusion 2.1-base, diffusers format")
    mb.add_argument("--checkpoint", metavar="FILE", help="MagicBokeh's published lora.pkl")
    mb.add_argument("--name", default="magicbokeh", help="bundle name in the store")
    mb.add_argument("--force", action="store_true", help="replace an existing bundle")
    q.set_defaults(run=_cmd_import)
    q = msub.add_parser(
        "export-onnx",
        parents=[common],
        help="export an imported MagicBokeh bundle to ONNX, for the light engine (no torch)",
    )
    q.add_argument("id", metavar="ID", choices=["magicbokeh"])
    q.add_argument("--name", default="magicbokeh", help="bundle name in the store")
    q.add_argument("--force", action="store_true", help="export again even if up to date")
    q.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    q.set_defaults(run=_cmd_export_onnx)
    q = msub.add_parser("verify", parents=[common], help="check installed files' SHA-256")
    q.add_argument("ids", nargs="*", metavar="ID")
    q.set_defaults(run=_cmd_verify)
    q = msub.add_parser("remove", parents=[common], help="delete an installed model")
    q.add_argument("ids", nargs="+", metavar="ID")
    q.set_defaults(run=_cmd_remove)
    q = msub.add_parser("path", parents=[common], help="print the installed model's file")
    q.add_argument("id", metavar="ID")
    q.set_defaults(run=_cmd_path)
