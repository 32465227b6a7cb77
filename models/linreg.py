"""Linear regression with Gaussian label noise (optional ridge via --lam).

    theta*_j ~ N(0, 1),  theta^0 = 0
    y = s0 + sigma * z,   z ~ N(0, 1)
    L(r; y) = (r0 - y)^2 / 2,      ell = r0 - y,   jac_ell = 1

Closed forms: Marchenko-Pastur gradient flow (tau = 0) and the homogenized-SGD Volterra curve.
Regenerate kernels: python -m dmftgen generate linreg
"""
import sympy as sp

from dmftgen import Model, student, teacher

# Symbols
r = student(1)
s = teacher(1)
z, sigma = sp.symbols("z sigma", real=True)

# Labels and loss
y = s[0] + sigma * z

# Model
MODEL = Model(
    name="linreg",
    description="linear regression, Gaussian teacher, Gaussian label noise sigma",
    student=r,
    teacher=s,
    noise={z: "normal"},
    params={sigma: 0.5},
    labels=y,
    loss=(r[0] - y) ** 2 / 2,
    init_std=0,
    teacher_std=1,
)
