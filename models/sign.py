"""Logistic student trained on a noiseless sign teacher (labels +-1).

    theta*_j ~ N(0, 1),  theta^0 = 0
    y = sign(s0)                                  (discontinuous: Stein route for nu)
    L(r; y) = softplus(-y * r0),   ell = -y * sigmoid(-y * r0)
    metric error = 1{y * r0 <= 0};  test error -> arccos(M / sqrt(Q rho)) / pi

Regenerate kernels: python -m dmftgen generate sign
"""
import sympy as sp

from dmftgen import Model, softplus, student, teacher

# Symbols
r = student(1)
s = teacher(1)

# Labels and loss
y = sp.sign(s[0])

# Model
MODEL = Model(
    name="sign",
    description="logistic student, noiseless sign teacher (perceptron labels)",
    student=r,
    teacher=s,
    labels=y,
    loss=softplus(-y * r[0]),
    metrics={"error": sp.Heaviside(-y * r[0], 1)},
    init_std=0,
    teacher_std=1,
)
