"""`dmftgen show MODEL`: the derived ell, Jacobian, labels, DMFT route and kernel op counts."""


def add_parser(sub):
    p = sub.add_parser("show", help="show what dmftgen derives from a model",
                       description="Print what dmftgen derives from a model: ell = dL/dr, its Jacobian, labels, "
                                   "metrics, regulariser, the DMFT route (tangents, nu estimator), kernel op "
                                   "counts, and the generated kernel file with the rule that placed it "
                                   "(built-in, beside the model file, or the user cache).")
    p.add_argument("model", metavar="MODEL", help="built-in name or path to a model file")
    p.set_defaults(func=run)


def kernel_location(model) -> str:
    """Which rule of dmftgen.paths.kernel_dir placed the kernels of ``model``."""
    import os
    from pathlib import Path

    from ..codegen import generated_dir
    from ..paths import is_builtin

    if os.environ.get("DMFTGEN_GENERATED"):
        return "from $DMFTGEN_GENERATED"
    if is_builtin(model.source):
        return "built-in"
    if generated_dir(model) == Path(model.source).resolve().parent / "generated":
        return "beside the model file"
    return "user cache: the model's folder is not writable"


def _std(v) -> str:
    """A standard deviation for ``N(0, s^2)``: a number as ``%g`` (the default 1.0 was printed as
    sympy's 1.00000000000000, and Rational(1, 2) as the ambiguous 1/2^2), a parameter expression
    in brackets unless it is a single symbol."""
    import sympy as sp

    v = sp.sympify(v)
    if v.is_number:
        return f"{float(v):g}"
    return v.name if isinstance(v, sp.Symbol) else f"({sp.sstr(v)})"


def run(args) -> int:
    import sympy as sp

    from ..codegen import generated_path
    from ..codegen.emit import specify
    from ..codegen.hashing import source_hash
    from ..codegen.printer import count_ops
    from ..model import load_model
    from ..symbolic import derive

    model = load_model(args.model)
    sysm = derive(model)
    print(f"model      {model.name}  ({model.display_source})")
    if model.description:
        print(f"           {model.description}")
    print(f"width      m = {model.m} student, k = {model.k} teacher columns")
    print("noise      " + (", ".join(f"{s.name} ~ {law}" for s, law in zip(model.noise_symbols, model.noise_laws))
                           or "none"))
    print("params     " + (", ".join(f"{s.name} = {v:g}" for s, v in model.params.items()) or "none"))
    print(f"init       theta0 ~ N(0, {_std(model.init_std)}^2), theta* ~ N(0, {_std(model.teacher_std)}^2)")
    if model.labels is not None:
        print(f"labels     y = {sp.sstr(model.labels)}")
    if model.loss is not None:
        print(f"loss       L = {sp.sstr(model.loss)}")
    for a, e in enumerate(sysm.ell):
        print(f"ell[{a}]     {sp.sstr(e)}")
    for a in range(model.m):
        for b in range(model.m):
            print(f"jac[{a},{b}]   {sp.sstr(sysm.jac_ell[a, b])}")
    for name, e in sysm.metrics:
        print(f"metric     {name} = {sp.sstr(e)}")
    if model.regularizer is not None:
        print(f"regulariser H = {sp.sstr(model.regularizer)}")
    print(f"DMFT       tangents {'deterministic (jac_ell constant)' if sysm.linear_ell else 'per path'}; "
          f"nu route: {sysm.route}" + (f" [{sysm.discontinuity_reason}]" if sysm.discontinuous else ""))
    if sysm.ell_jumps:
        print(f"THEORY     outside the theory: ell is discontinuous in r ({sysm.ell_jump_reason}); "
              "solve/compare/sweep refuse it (use a smooth surrogate, or --outside-theory)")
    print("kernels    " + ", ".join(f"{s.name} {count_ops([e for _, e in s.outputs])} ops" for s in specify(sysm)))
    print(f"generated  {generated_path(model)}  ({source_hash(model)[:19]}…; {kernel_location(model)})")
    print("trust      a model file is Python code that is executed when it is loaded (show, generate, "
          "simulate, ...): load only model files you trust.")
    return 0
