"""Source text of small test models written to temporary model files."""


def linreg_with_regularizer(name: str, regularizer: str, mu: float, init_std: float = 0.0,
                            kappa: float = 0.0) -> str:
    """Model file of linear regression (y = s0 + sigma z, L = (r0 - y)^2 / 2) with a declared
    row-wise regulariser H(theta) given as sympy code in ``th`` and the parameters ``mu`` and
    ``kappa`` (e.g. "mu * th[0] ** 2 / 2")."""
    return f'''"""linreg with a declared regulariser H = {regularizer}."""
import sympy as sp
from dmftgen import Model, student, teacher, theta
r = student(1)
s = teacher(1)
th = theta(1)
z, sigma, mu, kappa = sp.symbols("z sigma mu kappa", real=True)
y = s[0] + sigma * z
MODEL = Model(name="{name}", student=r, teacher=s, noise={{z: "normal"}},
              params={{sigma: 0.5, mu: {mu}, kappa: {kappa}}}, labels=y, loss=(r[0] - y) ** 2 / 2,
              regularizer={regularizer}, init_std={init_std}, teacher_std=1)
'''


#: linreg with H = mu sqrt(1/10 + theta^2) + kappa theta^2 / 2: kappa alone (mu = 0) is a ridge
#: declared as a regulariser (Monte Carlo theta-side), mu > 0 a smooth L1. One model for every test
#: that needs a declared H (``reg_h_model`` in conftest.py: compiled once per session, ~20 s).
REG_H = linreg_with_regularizer("reg_h_test",
                                "mu * sp.sqrt(sp.Rational(1, 10) + th[0] ** 2) + kappa * th[0] ** 2 / 2", 0.3)
