"""`dmftgen list`: the built-in models with one-line descriptions."""


def add_parser(sub):
    p = sub.add_parser("list", help="list the built-in models",
                       description="List the built-in models (models/ of the repository, or shipped inside "
                                   "the installed package) with their widths m, k and one-line descriptions.")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model import all_builtin_models

    models = all_builtin_models()
    width = max(len(m.name) for m in models)
    for m in models:
        print(f"{m.name:<{width}}  m={m.m} k={m.k}  {m.description}")
    return 0
