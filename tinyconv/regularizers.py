r"""Weight penalties (``keras.regularizers`` -> ``tinyconv.regularizers``), for ``kernel_regularizer=``
and ``bias_regularizer=`` on Dense, Conv2D and Conv2DTranspose.

A regularizer adds a penalty ``R(w)`` of a layer's weight to the loss the model is trained on, and
so ``dR/dw`` to the weight's gradient (written out here, as every gradient in tinyconv):

    L1(l1):        R = l1 * sum |w|                 dR/dw = l1 * sign(w)     (0 at w = 0: a subgradient)
    L2(l2):        R = l2 * sum w^2                 dR/dw = 2 * l2 * w
    L1L2(l1, l2):  the sum of the two.

Keras's L2 has no factor 1/2, so ``L2(l2)`` shrinks a weight as SGD's weight decay of ``2 * l2 * lr``
would. The penalty is part of the logged ``loss`` (training and ``evaluate``), as in Keras.
``l1(...)``, ``l2(...)`` and ``l1_l2(...)`` are Keras's lower-case names for the same classes.
"""
from __future__ import annotations

from . import arguments
from .backend import get_array_module


class Regularizer:
    def __call__(self, w):
        """The penalty of ``w``, a 0-d array where ``w`` lives."""
        raise NotImplementedError

    def gradient(self, w):
        """dR/dw, the shape of ``w``."""
        raise NotImplementedError


class L1L2(Regularizer):
    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = arguments.number(l1, "l1", type(self).__name__, low=0)
        self.l2 = arguments.number(l2, "l2", type(self).__name__, low=0)

    def __call__(self, w):
        xp = get_array_module(w)
        return self.l1 * xp.abs(w).sum() + self.l2 * (w * w).sum()

    def gradient(self, w):
        return self.l1 * get_array_module(w).sign(w) + (2 * self.l2) * w

    def __repr__(self) -> str:
        return f"{type(self).__name__}(l1={self.l1}, l2={self.l2})"


class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)


class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)


def l1(l1: float = 0.01) -> L1:
    return L1(l1)


def l2(l2: float = 0.01) -> L2:
    return L2(l2)


def l1_l2(l1: float = 0.01, l2: float = 0.01) -> L1L2:
    """Keras's shortcut: both penalties, 0.01 each by default (the class's defaults are 0)."""
    return L1L2(l1, l2)


NAMES = {"l1": L1, "l2": L2, "l1_l2": lambda: L1L2(0.01, 0.01)}


def get(identifier, owner: str) -> Regularizer | None:
    """None, a ``Regularizer``, or its name (``"l2"``: ``L2(0.01)``)."""
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str) and identifier in NAMES:
        return NAMES[identifier]()
    raise ValueError(f"{owner}: expected None, a regularizer (tinyconv.regularizers.l2(0.01), ...) or one of "
                     f"{sorted(NAMES)}, got {identifier!r}")
