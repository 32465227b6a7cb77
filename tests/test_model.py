"""Every malformed-model case gets its own message (matched) and a non-zero CLI exit, no traceback."""
import subprocess
import sys
import textwrap

import pytest
import sympy as sp

from dmftgen import Model, ModelError, UnsupportedModelError, softplus, student, teacher
from dmftgen.model import load_model

r = student(1)
s = teacher(1)
z, sigma = sp.symbols("z sigma", real=True)


def make(**kw):
    base = dict(name="m1", student=r, teacher=s, noise={z: "normal"}, params={sigma: 0.5},
                loss=(r[0] - s[0] - sigma * z) ** 2 / 2)
    base.update(kw)
    return Model(**base)


def test_valid_model_and_facts():
    m = make()
    assert (m.m, m.k, m.param_names, m.noise_laws) == (1, 1, ("sigma",), ("normal",))
    assert m.param_vector({"sigma": 2.0}).tolist() == [2.0]


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(loss=(r[0] - sp.Symbol("q", real=True)) ** 2), r"depends on undeclared symbol `q`"),
    (dict(loss=None, ell=sp.Matrix([r[0], r[0]])), r"ell` must be an m x 1 Matrix with m=1.*got shape \(2, 1\)"),
    (dict(ell=sp.Matrix([r[0]])), r"either `loss` or `ell`, not both"),
    (dict(loss=None), r"declare either `loss`.*got neither"),
    (dict(loss=sp.Function("f")(r[0])), r"undefined function `f\(r0\)`"),
    (dict(loss=sp.Integral(r[0] * sp.Symbol("x", real=True), (sp.Symbol("x", real=True), 0, 1))),
     r"contains `Integral`"),
    (dict(loss=sp.sqrt(r[0]) + z), r"is not real at the probe point"),
    (dict(loss=r[0] ** 2 / 2 + 1 / (sigma - sp.Rational(1, 2))), r"is not finite at the probe point"),
    (dict(loss=(r[0] - r[0] + sigma) ** 2), r"does not depend on the student pre-activations r0"),
    (dict(loss=None, ell=[0 * r[0]]), r"`ell` is identically zero"),
    (dict(noise={z: "cauchy"}), r"unknown law 'cauchy'"),
    (dict(noise={z: None}), r"noise variable `z` has no law"),
    (dict(noise={}), r"depends on undeclared symbol `z`"),
    (dict(params={sigma: None}), r"parameter `sigma` has no default"),
    (dict(teacher=()), r"uses teacher pre-activation `s0`.*missing teacher"),
    (dict(student=(sp.Symbol("a"),)), r"`student` must be the symbols returned by dmftgen.student"),
    (dict(params={sp.Symbol("out", real=True): 1.0}, loss=r[0] ** 2), r"name `out` is not allowed"),
])
def test_bad_declarations_are_named(kwargs, pattern):
    with pytest.raises(ModelError, match=pattern):
        make(**kwargs)


def test_undefined_function_is_unsupported_error():
    with pytest.raises(UnsupportedModelError, match="test_model.py"):
        make(loss=sp.Function("g")(r[0]))


def test_messages_name_the_file():
    with pytest.raises(ModelError, match=r"tests/test_model.py: model `m1`"):
        make(noise={z: "cauchy"})


def test_missing_file_and_no_model(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(str(tmp_path / "nope.py"))
    f = tmp_path / "empty.py"
    f.write_text("x = 1\n")
    with pytest.raises(ModelError, match="defines no model"):
        load_model(str(f))
    f = tmp_path / "five.py"
    f.write_text("MODEL = 5\n")  # it said "defines no model"
    with pytest.raises(ModelError, match="its MODEL is of type int, not a dmftgen.Model"):
        load_model(str(f))
    with pytest.raises(ModelError, match="unknown model `nosuch`"):
        load_model("nosuch")


def test_duplicate_name_with_builtin(tmp_path):
    f = tmp_path / "mine.py"
    f.write_text(textwrap.dedent("""
        from dmftgen import Model, student
        r = student(1)
        MODEL = Model(name="linreg", student=r, loss=r[0]**2/2)
    """))
    with pytest.raises(ModelError, match="two models are named `linreg`"):
        load_model(str(f))


def test_an_edited_model_file_is_loaded_again(tmp_path):
    """load_model cached a file per process for good: after editing the model (a notebook),
    load_model("m.py") kept returning the old declaration while "./m.py" gave the new one."""
    import os

    f = tmp_path / "edited.py"
    src = textwrap.dedent("""
        from dmftgen import Model, student, teacher
        r = student(1); s = teacher(1)
        MODEL = Model(name="edited", student=r, teacher=s, loss=(r[0] - {c} * s[0]) ** 2 / 2)
    """)
    f.write_text(src.format(c=1))
    first = load_model(str(f))
    assert load_model(str(f)) is first  # unchanged file: the cached model
    f.write_text(src.format(c=3))
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a coarse clock may not tick
    assert "3*s0" in str(load_model(str(f)).loss)


def test_cli_user_error_has_no_traceback(tmp_path):
    f = tmp_path / "bad.py"
    f.write_text(textwrap.dedent("""
        import sympy as sp
        from dmftgen import Model, student
        r = student(1)
        MODEL = Model(name="bad", student=r, loss=(r[0] - sp.Symbol("q", real=True))**2)
    """))
    p = subprocess.run([sys.executable, "-m", "dmftgen", "show", str(f)], capture_output=True, text=True)
    assert p.returncode == 2
    assert "undeclared symbol `q`" in p.stderr and "bad.py" in p.stderr
    assert "Traceback" not in p.stderr


def test_stable_primitives_derivatives():
    x = sp.Symbol("x", real=True)
    assert sp.diff(softplus(x), x).func.__name__ == "sigmoid"
    # sigma'(x) = sigma(x) sigma(-x) (no cancellation), equal to the textbook form
    d = sp.diff(sp.diff(softplus(x), x), x).rewrite(sp.exp)
    assert sp.simplify(d - sp.exp(-x) / (1 + sp.exp(-x)) ** 2) == 0


def test_stable_primitives_evaluate_at_irrational_arguments():
    """Probe points evaluate sigmoid/softplus of non-rational arguments (e.g. erf(r0/sqrt 2))."""
    m = make(loss=softplus(sp.erf(r[0] / sp.sqrt(2)) / 3) + (r[0] - s[0] - sigma * z) ** 2)
    assert m.m == 1
    assert abs(float(sp.N(softplus(sp.sqrt(2)))) - 1.6318352839548) < 1e-12


def test_the_readme_declaration_loads_from_a_user_file(tmp_path):
    """README "Declaring a model", copied into a file of one's own: it declared name="linreg",
    which load_model refuses (a built-in's name)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = re.search(r"## Declaring a model\n\n```python\n(.*?)```", readme, re.S).group(1)
    f = tmp_path / "mymodel.py"
    f.write_text(block)
    model = load_model(str(f))
    assert model.m == 1 and model.k == 1
