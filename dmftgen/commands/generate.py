"""`dmftgen generate [MODEL ...] [--check]`: write (or check) generated/<model>.py."""
import sys


def add_parser(sub):
    p = sub.add_parser("generate", help="generate numba kernels into generated/ (all built-in models by default)",
                       description="Derive and emit the numba kernel module of each model and write it only if "
                                   "its bytes change. Built-in models go to generated/; a model file elsewhere "
                                   "to generated/ beside it, or to the user cache when that folder is not "
                                   "writable (`dmftgen show` says which).")
    p.add_argument("models", metavar="MODEL", nargs="*", help="built-in names or model file paths")
    p.add_argument("--check", action="store_true",
                   help="do not write; exit 1 with a unified diff if generated/ is stale")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..codegen import check, generate, generated_path
    from ..codegen.hashing import source_hash
    from ..model import all_builtin_models, load_model

    models = [load_model(m) for m in args.models] if args.models else all_builtin_models()
    stale = 0
    for model in models:
        if args.check:
            diff = check(model)
            if diff is None:
                print(f"kernels for `{model.name}` up to date ({source_hash(model)[:15]}…)")
            else:
                stale += 1
                sys.stdout.write(diff)
                print(f"kernels for `{model.name}` are STALE: run python -m dmftgen generate {model.name}")
        else:
            path, changed = generate(model)
            verb = "regenerated" if changed else "up to date:"
            print(f"{verb} {generated_path(model)}")
    return 1 if stale else 0
