"""Logistic regression with a planted Bernoulli (logistic) teacher: the poster's Figure 1 model.

    theta*_j ~ N(0, 1),  theta^0 = 0
    y = 1{u < sigmoid(beta * s0)},   u ~ U(0, 1)        (labels jump in s0: Stein route for nu)
    L(r; y) = softplus(r0) - y * r0,     ell = sigmoid(r0) - y
    metric error = 1{(r0 > 0) != (y = 1)}

Regenerate kernels: python -m dmftgen generate logistic
"""
import sympy as sp

from dmftgen import Model, sigmoid, softplus, student, teacher

# Symbols
r = student(1)
s = teacher(1)
u, beta = sp.symbols("u beta", real=True)

# Labels and loss
y = sp.Heaviside(sigmoid(beta * s[0]) - u, 0)

# Model
MODEL = Model(
    name="logistic",
    description="logistic regression, planted logistic (Bernoulli) teacher of inverse temperature beta",
    student=r,
    teacher=s,
    noise={u: "uniform"},
    params={beta: 5.0},
    labels=y,
    loss=softplus(r[0]) - y * r[0],
    metrics={"error": sp.Heaviside(r[0], 0) * (1 - y) + sp.Heaviside(-r[0], 1) * y},
    init_std=0,
    teacher_std=1,
)
